// The package's text files: the conffile lists every config key with its default, the man
// page covers every command, the unit keeps what the daemon needs, and the maintainer
// scripts do the right thing per dpkg action (run for real by sh, in a sandbox root).
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { unitEnvironment } from "../../../bench/lib/daemon.js";
import { commands } from "../../../src/cli/commands.js";
import { CONFIG_KEYS, DEFAULTS, parseConfig } from "../../../src/config/conf.js";

const REPO = path.resolve(import.meta.dirname, "../../..");
const read = (f: string) => readFileSync(path.join(REPO, f), "utf8");

/** SPEC §1 and §6: the commands the package documents. */
const SPEC_COMMANDS = [
  "check",
  "plan",
  "status",
  "apply",
  "flush",
  "attach",
  "detach",
  "events",
  "metrics",
  "notify",
  "hook",
  "daemon",
];

describe("conffile /etc/pve-nat/pve-nat.conf", () => {
  const text = read("packaging/pve-nat.conf");

  it("is all comments: the installed file changes nothing", () => {
    expect(parseConfig(text, "pve-nat.conf")).toEqual({
      config: DEFAULTS,
      errors: [],
      unknownKeys: [],
    });
  });

  it("lists every key exactly once, commented out", () => {
    const keys = [...text.matchAll(/^# ([a-z_]+) =/gm)].map((m) => m[1]);
    expect(keys.slice().sort()).toEqual([...CONFIG_KEYS].sort());
  });

  it("shows the defaults: uncommenting every key line gives DEFAULTS", () => {
    const uncommented = text.replace(/^# ([a-z_]+ =.*)$/gm, "$1");
    expect(parseConfig(uncommented, "pve-nat.conf")).toEqual({
      config: DEFAULTS,
      errors: [],
      unknownKeys: [],
    });
  });
});

describe("man page pve-nat(1)", () => {
  const man = read("packaging/pve-nat.1");
  const sections = [...man.matchAll(/^\.SS "?([a-z-]+)/gm)].map((m) => m[1]);

  it("has a section per command of the SPEC", () => {
    expect(sections.slice().sort()).toEqual(SPEC_COMMANDS.slice().sort());
  });

  it("has a section per command the CLI registers (hidden ones aside)", () => {
    const program = new Command("pve-nat");
    for (const register of commands) register(program);
    const visible = program.commands
      .filter((c) => !(c as unknown as { _hidden: boolean })._hidden)
      .map((c) => c.name());
    expect(visible.filter((c) => !sections.includes(c))).toEqual([]);
  });

  it("documents every global flag", () => {
    for (const flag of ["config", "root", "node", "json", "version", "help"]) {
      expect(man).toContain(`\\-\\-${flag}`);
    }
  });

  it.runIf(existsSync("/usr/bin/man"))("renders without groff warnings", () => {
    const r = spawnSync("man", ["--warnings", "-l", "-Tutf8", "-Z", "packaging/pve-nat.1"], {
      cwd: REPO,
      encoding: "utf8",
      env: { ...process.env, MANWIDTH: "80", LC_ALL: "C.UTF-8" },
    });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
  });
});

describe("pve-nat.service", () => {
  const unit = read("packaging/pve-nat.service");
  const directives = new Map<string, string[]>();
  for (const line of unit.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m?.[1] && m[2] !== undefined) directives.set(m[1], [...(directives.get(m[1]) ?? []), m[2]]);
  }
  const one = (k: string) => directives.get(k)?.join(" ");

  it.each([
    ["Type", "simple"],
    ["ExecStart", "/usr/bin/pve-nat daemon"],
    ["Restart", "on-failure"],
    ["RuntimeDirectory", "pve-nat"],
    ["RuntimeDirectoryMode", "0700"],
    ["WantedBy", "multi-user.target"],
  ])("%s=%s", (key, value) => {
    expect(one(key)).toBe(value);
  });

  it("runs the daemon with two malloc arenas and fixed malloc thresholds, as the bench starts it (issue 10)", () => {
    expect(unitEnvironment(unit)).toEqual({
      MALLOC_ARENA_MAX: "2",
      MALLOC_MMAP_THRESHOLD_: "131072",
      MALLOC_TRIM_THRESHOLD_: "131072",
    });
  });

  it("keeps the capabilities netfilter needs", () => {
    const caps = one("CapabilityBoundingSet")?.split(/\s+/) ?? [];
    expect(caps).toEqual(expect.arrayContaining(["CAP_NET_ADMIN", "CAP_NET_RAW"]));
  });

  it.each([
    // /proc/sys/net must stay writable (ip_forward, arp_ignore).
    ["ProtectKernelTunables"],
    // V8 needs writable+executable memory for its JIT.
    ["MemoryDenyWriteExecute"],
    // /etc/pve and /run/lock, /var/log/pve (qm) must stay reachable.
    ["ProtectSystem=strict"],
    ["PrivateDevices"],
    ["PrivateNetwork"],
    ["InaccessiblePaths"],
  ])("does not use %s", (what) => {
    const [key, value] = what.split("=");
    const values = directives.get(key ?? "") ?? [];
    expect(value === undefined ? values : values.filter((v) => v === value)).toEqual([]);
  });
});

describe("pve-firewall.service drop-in", () => {
  it("runs notify reload after start and on reload, failures ignored", () => {
    const lines = read("hooks/pve-firewall-pve-nat.conf")
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("#"));
    expect(lines).toEqual([
      "[Service]",
      "ExecStartPost=-/usr/bin/pve-nat notify reload",
      "ExecReload=-/usr/bin/pve-nat notify reload",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Maintainer scripts, run by /bin/sh with every absolute path moved under a sandbox root and
// the systemd helpers and pve-nat replaced by stubs that log their arguments.

describe("maintainer scripts", () => {
  let root: string;
  const log = () =>
    existsSync(path.join(root, "calls.log"))
      ? readFileSync(path.join(root, "calls.log"), "utf8").trim().split("\n")
      : [];
  const at = (p: string) => path.join(root, p);

  function stub(file: string, body = "") {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, `#!/bin/sh\necho "$(basename "$0") $*" >>"${root}/calls.log"\n${body}\n`);
    chmodSync(file, 0o755);
  }

  function runScript(name: string, args: string[]) {
    const text = read(`packaging/debian/${name}`).replace(
      /(?<=[\s"'=(])\/(etc|var|run|usr)\//g,
      `${root}/$1/`,
    );
    const script = path.join(root, name);
    writeFileSync(script, text);
    const r = spawnSync("/bin/sh", ["-e", script, ...args], {
      encoding: "utf8",
      env: { PATH: `${root}/stubs:/usr/bin:/bin`, LC_ALL: "C" },
    });
    return { status: r.status, stderr: r.stderr };
  }

  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), "pvenat-maint-"));
    for (const cmd of ["deb-systemd-helper", "deb-systemd-invoke", "systemctl"]) {
      stub(path.join(root, "stubs", cmd));
    }
    stub(at("usr/bin/pve-nat"));
    mkdirSync(at("usr/libexec/pve-nat"), { recursive: true });
    writeFileSync(at("usr/libexec/pve-nat/pve-nat-hook"), read("hooks/pve-nat-hook"));
    mkdirSync(at("var/lib"), { recursive: true });
    mkdirSync(at("etc"), { recursive: true });
    mkdirSync(at("run"), { recursive: true });
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  function guestConf(node: string, kind: "qemu-server" | "lxc", vmid: number, text: string) {
    const file = at(`etc/pve/nodes/${node}/${kind}/${vmid}.conf`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }

  it("postinst configure without systemd: places the snippet, enables, starts nothing", () => {
    expect(runScript("postinst", ["configure"])).toEqual({ status: 0, stderr: "" });
    const snippet = at("var/lib/vz/snippets/pve-nat-hook");
    expect(readFileSync(snippet, "utf8")).toBe(read("hooks/pve-nat-hook"));
    expect(statSync(snippet).mode & 0o777).toBe(0o755);
    expect(readFileSync(at("var/lib/pve-nat/created-dirs"), "utf8")).toBe(
      `${root}/var/lib/vz\n${root}/var/lib/vz/snippets\n`,
    );
    expect(log()).toEqual([
      "deb-systemd-helper unmask pve-nat.service",
      "deb-systemd-helper --quiet was-enabled pve-nat.service",
      "deb-systemd-helper enable pve-nat.service",
    ]);
  });

  it("postinst on an upgrade with systemd: reloads units and restarts the daemon", () => {
    mkdirSync(at("run/systemd/system"), { recursive: true });
    mkdirSync(at("var/lib/vz/snippets"), { recursive: true });
    writeFileSync(at("var/lib/vz/snippets/pve-nat-hook"), "old version");
    expect(runScript("postinst", ["configure", "0.0.9-1"]).status).toBe(0);
    expect(readFileSync(at("var/lib/vz/snippets/pve-nat-hook"), "utf8")).toBe(
      read("hooks/pve-nat-hook"),
    );
    // The snippet directory existed: nothing recorded for purge to remove.
    expect(existsSync(at("var/lib/pve-nat/created-dirs"))).toBe(false);
    expect(log().slice(-2)).toEqual([
      "systemctl --system daemon-reload",
      "deb-systemd-invoke restart pve-nat.service",
    ]);
  });

  it("prerm remove with systemd: stops the daemon, then flushes", () => {
    mkdirSync(at("run/systemd/system"), { recursive: true });
    expect(runScript("prerm", ["remove"])).toEqual({ status: 0, stderr: "" });
    expect(log()).toEqual(["deb-systemd-invoke stop pve-nat.service", "pve-nat flush"]);
  });

  it.each([["upgrade", "0.2.0-1"], ["deconfigure"], ["failed-upgrade", "0.1.0-1"]])(
    "prerm %s leaves daemon and forwards alone",
    (...args) => {
      mkdirSync(at("run/systemd/system"), { recursive: true });
      expect(runScript("prerm", args).status).toBe(0);
      expect(log()).toEqual([]);
    },
  );

  it("prerm remove survives a failing flush, with a hint", () => {
    stub(at("usr/bin/pve-nat"), "exit 3");
    const r = runScript("prerm", ["remove"]);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain("flush failed");
  });

  it("postrm remove keeps the snippet and config, drops the sockets", () => {
    runScript("postinst", ["configure"]);
    mkdirSync(at("run/pve-nat"), { recursive: true });
    writeFileSync(at("run/pve-nat/bus.sock"), "");
    expect(runScript("postrm", ["remove"]).status).toBe(0);
    expect(existsSync(at("var/lib/vz/snippets/pve-nat-hook"))).toBe(true);
    expect(existsSync(at("run/pve-nat"))).toBe(false);
    expect(log().at(-1)).toBe("deb-systemd-helper mask pve-nat.service");
  });

  it("postrm remove withdraws this node's presence file (pve-nat.conf's node), not others'", () => {
    runScript("postinst", ["configure"]);
    mkdirSync(at("etc/pve-nat"), { recursive: true });
    writeFileSync(at("etc/pve-nat/pve-nat.conf"), "# mine\nnode = pve2\n");
    for (const node of ["pve1", "pve2"]) {
      mkdirSync(at(`etc/pve/nodes/${node}`), { recursive: true });
      writeFileSync(at(`etc/pve/nodes/${node}/pve-nat.json`), "{}\n");
    }
    expect(runScript("postrm", ["remove"])).toEqual({ status: 0, stderr: "" });
    expect(existsSync(at("etc/pve/nodes/pve2/pve-nat.json"))).toBe(false);
    expect(existsSync(at("etc/pve/nodes/pve1/pve-nat.json"))).toBe(true);
  });

  it("postrm purge without references removes snippet, created dirs, config and state", () => {
    runScript("postinst", ["configure"]);
    mkdirSync(at("etc/pve-nat"), { recursive: true });
    writeFileSync(at("etc/pve-nat/pve-nat.conf.dpkg-old"), "");
    mkdirSync(at("var/lib/pve-nat/addon"), { recursive: true });
    guestConf("pve1", "qemu-server", 100, "name: other\nhookscript: local:snippets/other\n");
    expect(runScript("postrm", ["purge"])).toEqual({ status: 0, stderr: "" });
    for (const gone of ["var/lib/vz", "etc/pve-nat", "var/lib/pve-nat", "run/pve-nat"]) {
      expect(existsSync(at(gone)), gone).toBe(false);
    }
    expect(log().slice(-2)).toEqual([
      "deb-systemd-helper purge pve-nat.service",
      "deb-systemd-helper unmask pve-nat.service",
    ]);
  });

  it("postrm purge keeps a snippet guests still use and names them", () => {
    runScript("postinst", ["configure"]);
    guestConf("pve1", "qemu-server", 107, "hookscript: local:snippets/pve-nat-hook\nmemory: 512\n");
    guestConf("pve2", "lxc", 201, "arch: amd64\nhookscript: local:snippets/pve-nat-hook\n");
    guestConf("pve1", "qemu-server", 108, "memory: 512\n");
    const r = runScript("postrm", ["purge"]);
    expect(r.status).toBe(0);
    expect(existsSync(at("var/lib/vz/snippets/pve-nat-hook"))).toBe(true);
    expect(r.stderr.split("\n").filter((l) => l.startsWith("  "))).toEqual([
      "  VM 107 (node pve1): qm set 107 --delete hookscript",
      "  CT 201 (node pve2): pct set 201 --delete hookscript",
    ]);
    expect(existsSync(at("var/lib/pve-nat"))).toBe(false);
  });

  it("postrm purge keeps the snippet when /etc/pve is not mounted", () => {
    runScript("postinst", ["configure"]);
    mkdirSync(at("etc/pve"), { recursive: true });
    const r = runScript("postrm", ["purge"]);
    expect(r.stderr).toContain("/etc/pve is not mounted");
    expect(existsSync(at("var/lib/vz/snippets/pve-nat-hook"))).toBe(true);
  });

  it.each(["postinst", "prerm", "postrm"])("%s is POSIX sh (dash -n)", (name) => {
    expect(() =>
      execFileSync("dash", ["-n", path.join(REPO, "packaging/debian", name)]),
    ).not.toThrow();
  });
});
