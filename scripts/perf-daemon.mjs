// Daemon cost vs. number of guests (issue 5), for development: a simulated node under --root
// with N LXC guests × 10 NAT rules (9 port forwards + 1 masquerade), run state from ONE process
// listening on N abstract sockets @/var/lib/lxc/<vmid>/command, the daemon in a network
// namespace created here (SPEC §7; deleted on exit). The node is written, and its run state held, by
// the tests' simulated-node builder (test/helpers/simnode.ts). Prints per N: reconcile (daemon's own ms),
// RSS, CPU % while idle (the watcher's polls), pre-start event → applied (the daemon's `ms`,
// p50/p95), and .fw edit → applied (wall, via the watcher). `npm run bench` is the full
// benchmark; this is the quick loop for profiling the daemon alone.
//
//   node scripts/perf-daemon.mjs [--bundle FILE.cjs] [--counts 10,100,1000] [--events 30]
//
// Run as root. FILE.cjs must sit inside the repository (it loads zeromq from node_modules).
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { bundleTs } from "./import-ts.mjs";

const repo = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const counts = opt("--counts", "10,100,1000").split(",").map(Number);
const events = Number(opt("--events", "30"));
const edits = Number(opt("--edits", "6"));
let bundle = opt("--bundle", "");
if (!bundle) {
  bundle = path.join(repo, "node_modules/.cache/perf/pve-nat.cjs");
  const { bundle: build } = await import(path.join(repo, "scripts/bundle.mjs"));
  await build({ outfile: bundle });
}
bundle = path.resolve(bundle);
const simnodeFile = await bundleTs("test/helpers/simnode.ts");
const simnode = await import(pathToFileURL(simnodeFile).href);
// Node 20 pads abstract socket names to the full sun_path; LXC does not.
const holderNode = simnode.holderNode(repo);

const NS = `pvenat-perf-${randomBytes(3).toString("hex")}`;
const root = path.join(os.tmpdir(), `${NS}-root`);
const sh = (cmd, a, input) =>
  execFileSync(cmd, a, { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
const inNs = (a, input) => sh("ip", ["netns", "exec", NS, ...a], input);
const children = [];

function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  try {
    sh("ip", ["netns", "del", NS]);
  } catch {
    // not created
  }
  rmSync(root, { recursive: true, force: true });
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

const FIRST = 1000;
const fwText = (vmid, variant = 0) => {
  const lines = ["[OPTIONS]", "", "enable: 1", "", "[RULES]", ""];
  for (let j = 0; j < 9; j++) {
    const pub = j === 0 && variant ? 40_000 + vmid - FIRST : 10_000 + (vmid - FIRST) * 10 + j;
    lines.push(`IN ACCEPT -p tcp -dport ${8000 + j} # NAT:${pub} service ${j}`);
  }
  lines.push("OUT ACCEPT # NAT outbound");
  return `${lines.join("\n")}\n`;
};
const confText = (vmid) =>
  `hostname: ct${vmid}\nnet0: name=eth0,bridge=vmbr1,ip=10.10.${Math.floor((vmid - FIRST) / 250)}.${((vmid - FIRST) % 250) + 2}/16,type=veth\n`;

async function writeTree(n) {
  rmSync(root, { recursive: true, force: true });
  const guests = [];
  for (let vmid = FIRST; vmid < FIRST + n; vmid++) {
    guests.push({ vmid, kind: "lxc", conf: confText(vmid), fw: fwText(vmid) });
  }
  await simnode.writeNode({
    root,
    config: simnode.natConf({ settings: { poll_interval_ms: 1000, log_level: "debug" } }),
    guests,
  });
}

// Run state of all guests: one process holding their LXC command sockets.
const HOLDER = `import(${JSON.stringify(pathToFileURL(simnodeFile).href)}).then((m) => m.holdLxcSockets(...process.argv.slice(-2).map(Number)));`;

function lines(child, onLine) {
  let buf = "";
  child.stdout.on("data", (d) => {
    buf += d.toString();
    let i = buf.indexOf("\n");
    while (i >= 0) {
      onLine(buf.slice(0, i), performance.now());
      buf = buf.slice(i + 1);
      i = buf.indexOf("\n");
    }
  });
}

const until = async (what, fn, ms) => {
  const t0 = performance.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (performance.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

const cpuTicks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
};
const rssMb = (pid) =>
  Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : null;
};
const r1 = (x) => (x === null ? null : Math.round(x * 10) / 10);

async function measure(n) {
  await writeTree(n);
  const holder = spawn(
    "ip",
    [
      "netns",
      "exec",
      NS,
      holderNode,
      "--input-type=module",
      "-e",
      HOLDER,
      String(FIRST),
      String(n),
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.push(holder);
  let ready = false;
  lines(holder, (l) => {
    if (l === "ready") ready = true;
  });
  await until("holder", () => ready, 60_000);

  const log = [];
  const daemon = spawn(
    "ip",
    ["netns", "exec", NS, process.execPath, bundle, "daemon", "--root", root],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.push(daemon);
  const logFile = path.join(os.tmpdir(), `pvenat-perf-daemon-${n}.log`);
  writeFileSync(logFile, "");
  lines(daemon, (l, at) => {
    appendFileSync(logFile, `${l}\n`);
    try {
      log.push({ ...JSON.parse(l), at });
    } catch {
      // not JSON
    }
  });
  const rec = await until("reconciled", () => log.find((e) => e.msg === "reconciled"), 120_000);
  await until("ready", () => log.find((e) => e.msg === "ready"), 10_000);
  // `ip netns exec` execs the daemon: same pid.
  const pid = daemon.pid;
  await new Promise((r) => setTimeout(r, 1500));
  const idleS = 10;
  const t0 = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, idleS * 1000));
  // utime + stime are in USER_HZ (100 on Linux).
  const cpu = ((cpuTicks(pid) - t0) / 100 / idleS) * 100;

  const applied = [];
  for (let i = 0; i < events; i++) {
    const vmid = FIRST + Math.floor((i * n) / events);
    const from = log.length;
    inNs([process.execPath, bundle, "hook", String(vmid), "pre-start", "--root", root]);
    const ev = await until(
      "applied",
      () => log.slice(from).find((e) => e.msg === "applied" && e.vmid === vmid),
      10_000,
    );
    applied.push(ev.ms);
  }
  const cycles = log.filter((e) => e.msg === "cycle" && e.owners === 1).slice(-events);

  const editMs = [];
  const variant = new Map();
  for (let i = 0; i < edits; i++) {
    const vmid = FIRST + Math.floor(((i >> 1) * n * 2) / edits);
    variant.set(vmid, variant.get(vmid) === 1 ? 0 : 1);
    const file = path.join(root, `etc/pve/firewall/${vmid}.fw`);
    const from = log.length;
    const t = performance.now();
    writeFileSync(`${file}.tmp`, fwText(vmid, variant.get(vmid)));
    renameSync(`${file}.tmp`, file);
    const ev = await until(
      "edit applied",
      () => log.slice(from).find((e) => e.msg === "applied" && e.vmid === vmid),
      15_000,
    );
    editMs.push(ev.at - t);
    await new Promise((r) => setTimeout(r, 300));
  }
  const rss = rssMb(pid);
  daemon.kill("SIGTERM");
  holder.kill("SIGTERM");
  await new Promise((r) => daemon.once("exit", r));
  inNs(["iptables", "-t", "nat", "-F"]);
  return {
    guests: n,
    reconcile_ms: rec.ms,
    rss_mb: r1(rss),
    idle_cpu_pct: r1(cpu),
    apply_ms_p50: r1(pct(applied, 50)),
    apply_ms_p95: r1(pct(applied, 95)),
    cycle_load_ms_p50: r1(
      pct(
        cycles.map((c) => c.loadMs),
        50,
      ),
    ),
    cycle_restore_ms_p50: r1(
      pct(
        cycles.map((c) => c.restoreMs),
        50,
      ),
    ),
    edit_to_live_ms_p50: r1(pct(editMs, 50)),
    edit_to_live_ms_max: r1(Math.max(...editMs)),
  };
}

try {
  sh("ip", ["netns", "add", NS]);
  inNs(["ip", "link", "set", "lo", "up"]);
  inNs(["ip", "link", "add", "vmbr0", "type", "bridge"]);
  inNs(["ip", "addr", "add", "203.0.113.10/24", "dev", "vmbr0"]);
  inNs(["ip", "link", "set", "vmbr0", "up"]);
  const out = [];
  for (const n of counts) {
    const r = await measure(n);
    out.push(r);
    process.stderr.write(`${JSON.stringify(r)}\n`);
  }
  console.table(out);
  if (!existsSync(bundle)) throw new Error("bundle vanished");
} finally {
  cleanup();
}
