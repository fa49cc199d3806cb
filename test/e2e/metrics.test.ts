// Metrics (SPEC §8) with Debian's real Prometheus tools: `promtool check metrics` accepts what
// `pve-nat metrics` prints, and prometheus-node-exporter, run inside the node's namespace with
// its textfile collector pointed at the daemon's metrics_textfile directory, serves pve-nat's
// metrics over HTTP — with per-forward counters that grow when real traffic crosses a forward.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, waitFor } from "../helpers/exec.js";
import { ADDR } from "./harness.js";
import { createScenario, type Scenario } from "./scenario.js";

const TEXTFILE_DIR = "/var/lib/prometheus/node-exporter";
/** node_exporter listens on the node's guest-side address, inside the node's namespace. */
const EXPORTER = `${ADDR.gateway}:9100`;

let sc: Scenario;
let exporter: Background | undefined;

/** One sample's value from exposition text, by name and labels it must carry (in any order:
 *  node_exporter sorts them); null if absent. */
function sample(text: string, name: string, want: Record<string, string> = {}): number | null {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries(
      [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) return Number(m[3]);
  }
  return null;
}

/** GET /metrics from inside the node's namespace (Node's fetch, no proxy). */
async function scrape(): Promise<string> {
  const script =
    "fetch(process.env.URL).then(async r => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1) }, e => { console.error(String(e)); process.exit(1) })";
  const r = await sc.sim.exec(sc.sim.ns.node, [process.execPath, "-e", script], {
    env: { ...process.env, URL: `http://${EXPORTER}/metrics` },
    timeoutMs: 10_000,
  });
  if (r.code !== 0) throw new Error(`scrape failed: ${r.stderr}`);
  return r.stdout;
}

const LABELS_107 = {
  vmid: "107",
  direction: "in",
  proto: "tcp",
  public_address: ADDR.public,
  public_port: "822",
  private_address: "10.10.10.107",
  private_port: "22",
};

beforeAll(async () => {
  sc = await createScenario({
    guests: [{ vmid: 107, kind: "qemu", plug: false }],
    // Drift checks (and with them metrics writes) every second, so the test waits little.
    config: "drift_interval_ms = 1000\n",
  });
  await mkdir(path.join(sc.sim.root, TEXTFILE_DIR), { recursive: true });
  await sc.sim.writePve("firewall/107.fw", "[RULES]\nIN ACCEPT -p tcp -dport 22 # NAT:822 ssh\n");
  await sc.startDaemon();
  await sc.boot(107);
  const g = sc.sim.guests.get(107);
  if (!g) throw new Error("no guest 107");
  await sc.sim.tcpService(g.ns, 22, "SSH-2.0-vm107");
  exporter = sc.sim.spawn(sc.sim.ns.node, [
    "prometheus-node-exporter",
    "--collector.disable-defaults",
    "--collector.textfile",
    `--collector.textfile.directory=${path.join(sc.sim.root, TEXTFILE_DIR)}`,
    `--web.listen-address=${EXPORTER}`,
  ]);
  const up = await waitFor(
    async () =>
      (await sc.sim.exec(sc.sim.ns.node, ["ss", "-Hltn", "sport = :9100"])).stdout.trim() !== "",
    10_000,
  );
  if (!up) throw new Error(`node_exporter did not start:\n${exporter.output()}`);
}, 60_000);

afterAll(async () => {
  await exporter?.stop();
  await sc?.destroy();
});

describe("pve-nat metrics", () => {
  it("prints the Prometheus text format that promtool accepts", async () => {
    const r = await sc.cli(["metrics"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("# TYPE pve_nat_forward_packets_total counter");
    expect(sample(r.stdout, "pve_nat_daemon_up")).toBe(1);
    expect(sample(r.stdout, "pve_nat_applies_total")).toBeGreaterThan(0);
    expect(sample(r.stdout, "pve_nat_hook_wait_seconds_count", { phase: "post-start" })).toBe(1);
    expect(sample(r.stdout, "pve_nat_forwards", { state: "active" })).toBe(1);
    // promtool reads the text on stdin; run in the node's namespace like everything else.
    const lint = await sc.sim.exec(sc.sim.ns.node, ["promtool", "check", "metrics"], {
      input: r.stdout,
    });
    expect(`${lint.code} ${lint.stdout}${lint.stderr}`).toBe("0 ");
  });

  it("node_exporter serves the daemon's textfile, and its forward counters grow with traffic", async () => {
    const first = await waitFor(async () => {
      const text = await scrape();
      return sample(text, "pve_nat_forward_packets_total", LABELS_107) !== null ? text : null;
    }, 10_000);
    expect(
      first,
      `pve-nat's metrics never showed up in node_exporter:\n${(await scrape())
        .split("\n")
        .filter(
          (l) =>
            !l.startsWith("go_") &&
            !l.startsWith("# ") &&
            !l.startsWith("process_") &&
            !l.startsWith("promhttp"),
        )
        .join("\n")}\n${sc.daemon?.output().slice(-2000)}`,
    ).not.toBeNull();
    const before = first as string;
    expect(sample(before, "node_textfile_scrape_error")).toBe(0);
    expect(sample(before, "pve_nat_daemon_up")).toBe(1);
    const packets0 = sample(before, "pve_nat_forward_packets_total", LABELS_107) as number;
    const bytes0 = sample(before, "pve_nat_forward_bytes_total", LABELS_107) as number;

    // Three real connections through the forward (each one's first packet hits the DNAT rule).
    for (let i = 0; i < 3; i++) {
      const p = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, 822);
      expect(p.data.trim()).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    }
    const after = await waitFor(async () => {
      const text = await scrape();
      const n = sample(text, "pve_nat_forward_packets_total", LABELS_107) ?? 0;
      return n >= packets0 + 3 ? text : null;
    }, 10_000);
    expect(after, "the packet counter did not grow by 3 within 10 s").not.toBeNull();
    expect(sample(after as string, "pve_nat_forward_bytes_total", LABELS_107)).toBeGreaterThan(
      bytes0,
    );
    expect(sample(after as string, "node_textfile_scrape_error")).toBe(0);
  });

  it("without the daemon, metrics says so and still shows the forwards and their counters", async () => {
    expect(await sc.stopDaemon()).toBe(0);
    const r = await sc.cli(["metrics"]);
    expect(r.code, r.stderr).toBe(0);
    expect(sample(r.stdout, "pve_nat_daemon_up")).toBe(0);
    expect(sample(r.stdout, "pve_nat_applies_total")).toBeNull();
    expect(sample(r.stdout, "pve_nat_forward_packets_total", LABELS_107)).toBeGreaterThanOrEqual(3);
    await sc.startDaemon();
  });
});
