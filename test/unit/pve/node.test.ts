// loadNode / fingerprint against small temp trees (a simulated node under --root).
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DEFAULTS } from "../../../src/config/conf.js";
import { ConfigError } from "../../../src/errors.js";
import type { FwFile, FwKind } from "../../../src/model.js";
import { rooted } from "../../../src/paths.js";
import type { Background } from "../../helpers/exec.js";
import { startGuest, writeNode } from "../../helpers/simnode.js";

// The .fw grammar is tested on its own; here a stand-in records what the loader hands it.
vi.mock("../../../src/pve/fwfile.js", () => ({
  parseFwFile: (text: string, file: string, kind: FwKind): FwFile => {
    if (text === "THROW") throw new Error("grammar bug");
    return {
      file,
      kind,
      options: { text: String(text).trim() },
      rules: [],
      aliases: {},
      ipsets: {},
      groups: {},
      diagnostics: [],
    };
  },
}));
vi.mock("../../../src/pve/refs.js", () => ({
  checkRefs: (fw: FwFile, cluster: FwFile | null) => [
    {
      file: fw.file,
      line: 1,
      severity: "info",
      message: `refs checked against ${cluster?.file ?? "none"}`,
    },
  ],
}));

const { loadNode } = await import("../../../src/pve/node.js");
const { createNodeSource } = await import("../../../src/pve/cache.js");

/** What the daemon's watcher reads: a source's fingerprint after a full refresh. */
async function fingerprint(
  p: Parameters<typeof createNodeSource>[0],
): Promise<Map<string, string>> {
  const source = createNodeSource(p);
  await source.refresh({ all: true });
  return source.fingerprint();
}

let root: string;
const children: Background[] = [];
const path = (abs: string) => rooted(root, abs);
const paths = (over: { node?: string } = {}) => ({
  path,
  configPath: path("/etc/pve-nat/pve-nat.conf"),
  ...over,
});

async function put(abs: string, text: string): Promise<void> {
  await mkdir(dirname(path(abs)), { recursive: true });
  await writeFile(path(abs), text);
}

/** A simulated qemu guest vmid, running (pidfile + `-pidfile` process) until the test ends. */
function startQemu(vmid: number): Promise<Background> {
  return startGuest({ root, vmid, kind: "qemu", ns: null, track: (b) => children.push(b) });
}

const CONF = "node = pve1\npublic_address = 203.0.113.10\nexternal_interface = pvenat-none0\n";

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "pvenat-node-"));
  await writeNode({
    root,
    config: CONF,
    cluster: "cluster rules",
    host: "host rules",
    guests: [
      {
        vmid: 107,
        kind: "qemu",
        conf: "name: web\nnet0: virtio=A,bridge=vmbr1,firewall=1\nipconfig0: ip=10.10.10.107/24\n",
        fw: "guest 107 rules",
      },
      {
        vmid: 105,
        kind: "lxc",
        conf: "hostname: db\nnet0: name=eth0,bridge=vmbr1,ip=10.10.10.5/24\n",
      },
      { vmid: 200, kind: "qemu", node: "pve2", conf: "name: elsewhere\n", fw: "guest 200 rules" },
    ],
  });
  await put("/etc/pve/nodes/pve1/qemu-server/notes.txt", "not a guest");
});
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill9();
  await rm(root, { recursive: true, force: true });
});
afterAll(() => vi.restoreAllMocks());

describe("loadNode", () => {
  it("reads config, cluster/host/guest files of this node only, with run state", async () => {
    await startQemu(107);
    const input = await loadNode(paths());
    expect(input.node).toBe("pve1");
    expect(input.config).toEqual({
      ...DEFAULTS,
      node: "pve1",
      publicAddress: "203.0.113.10",
      externalInterface: "pvenat-none0",
    });
    expect(input.publicAddress).toBe("203.0.113.10");
    expect(input.cluster).toMatchObject({
      file: "firewall/cluster.fw",
      kind: "cluster",
      options: { text: "cluster rules" },
    });
    expect(input.host).toMatchObject({
      file: "nodes/pve1/host.fw",
      kind: "host",
      options: { text: "host rules" },
    });
    expect(Object.keys(input.guests)).toEqual(["105", "107"]);
    expect(input.guests[107]?.state).toBe("running");
    expect(input.guests[105]?.state).toBe("stopped");
    expect(input.guests[107]?.conf).toMatchObject({
      vmid: 107,
      kind: "qemu",
      name: "web",
      file: "nodes/pve1/qemu-server/107.conf",
    });
    expect(input.guests[105]?.conf).toMatchObject({
      vmid: 105,
      kind: "lxc",
      name: "db",
      file: "nodes/pve1/lxc/105.conf",
    });
    expect(input.guests[107]?.fw).toMatchObject({
      file: "firewall/107.fw",
      kind: "guest",
      options: { text: "guest 107 rules" },
    });
    expect(input.guests[105]?.fw).toBeNull();
    // Reference checks run against cluster.fw and land in each file's own diagnostics.
    expect(input.guests[107]?.fw?.diagnostics).toEqual([
      {
        file: "firewall/107.fw",
        line: 1,
        severity: "info",
        message: "refs checked against firewall/cluster.fw",
      },
    ]);
    expect(input.host?.diagnostics[0]?.message).toBe("refs checked against firewall/cluster.fw");
    expect(input.cluster?.diagnostics[0]?.message).toBe("refs checked against firewall/cluster.fw");
    expect(input.hostPorts).toEqual({ any: expect.any(Array), at: expect.any(Object) });
    expect(input.diagnostics).toEqual([]);
  });

  it("--node picks another node's guests", async () => {
    const input = await loadNode(paths({ node: "pve2" }));
    expect(input.node).toBe("pve2");
    expect(Object.keys(input.guests)).toEqual(["200"]);
    expect(input.host).toBeNull();
    expect(input.guests[200]?.fw?.file).toBe("firewall/200.fw");
  });

  it("pending guests that do not run yet are starting; running ones stay running", async () => {
    await startQemu(107);
    const input = await loadNode(paths(), { pending: new Set([105, 107]) });
    expect(input.guests[105]?.state).toBe("starting");
    expect(input.guests[107]?.state).toBe("running");
  });

  it("a missing pve-nat.conf means defaults", async () => {
    await rm(path("/etc/pve-nat/pve-nat.conf"));
    const input = await loadNode(paths({ node: "pve1" }));
    expect(input.config).toEqual(DEFAULTS);
    expect(Object.keys(input.guests)).toEqual(["105", "107"]);
  });

  it("public_address = auto without an address → null and a warning", async () => {
    await put("/etc/pve-nat/pve-nat.conf", "node = pve1\nexternal_interface = pvenat-none0\n");
    const input = await loadNode(paths());
    expect(input.publicAddress).toBeNull();
    expect(input.diagnostics).toEqual([
      {
        file: path("/etc/pve-nat/pve-nat.conf"),
        line: 0,
        severity: "warning",
        message: expect.stringContaining("pvenat-none0 has no IPv4 address"),
      },
    ]);
  });

  it("a bad config value throws ConfigError naming key, file and line", async () => {
    await put("/etc/pve-nat/pve-nat.conf", "node = pve1\nhairpin = maybe\n");
    const err = await loadNode(paths()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ file: path("/etc/pve-nat/pve-nat.conf"), line: 2 });
    expect((err as Error).message).toContain("bad value for hairpin");
  });

  it("an unknown config key is a warning, the load goes on", async () => {
    await put("/etc/pve-nat/pve-nat.conf", `${CONF}external_iface = vmbr1\n`);
    const input = await loadNode(paths());
    expect(input.diagnostics).toEqual([
      {
        file: path("/etc/pve-nat/pve-nat.conf"),
        line: 4,
        severity: "warning",
        message: "unknown key external_iface",
      },
    ]);
  });

  it("an unreadable file is a diagnostic, the other guests still load", async () => {
    await rm(path("/etc/pve/firewall/107.fw"));
    await mkdir(path("/etc/pve/firewall/107.fw"));
    await rm(path("/etc/pve/nodes/pve1/lxc/105.conf"));
    await mkdir(path("/etc/pve/nodes/pve1/lxc/105.conf"));
    const input = await loadNode(paths());
    expect(input.guests[107]?.fw).toBeNull();
    expect(input.guests[105]).toBeUndefined();
    expect(input.diagnostics).toEqual([
      {
        file: "nodes/pve1/lxc/105.conf",
        line: 0,
        severity: "error",
        message: "cannot read: EISDIR",
      },
      { file: "firewall/107.fw", line: 0, severity: "error", message: "cannot read: EISDIR" },
    ]);
  });

  it("a grammar bug in one .fw file is reported; that guest loads without rules", async () => {
    await put("/etc/pve/firewall/107.fw", "THROW");
    const input = await loadNode(paths());
    expect(input.guests[107]).toMatchObject({ fw: null, state: "stopped" });
    expect(input.diagnostics).toEqual([
      {
        file: "firewall/107.fw",
        line: 0,
        severity: "error",
        message: "internal error: grammar bug",
      },
    ]);
  });

  it("an empty /etc/pve gives no guests and no error", async () => {
    await rm(path("/etc/pve"), { recursive: true });
    const input = await loadNode(paths());
    expect(input).toMatchObject({
      node: "pve1",
      cluster: null,
      host: null,
      guests: {},
      diagnostics: [],
    });
  });

  it("the same VMID as qemu and lxc is an error; the qemu config wins", async () => {
    await put("/etc/pve/nodes/pve1/lxc/107.conf", "hostname: dup\n");
    const input = await loadNode(paths());
    expect(input.guests[107]?.conf.kind).toBe("qemu");
    expect(input.diagnostics).toEqual([
      expect.objectContaining({ file: "nodes/pve1/lxc/107.conf", severity: "error" }),
    ]);
  });
});

describe("fingerprint", () => {
  it("is stable while nothing changes", async () => {
    expect(await fingerprint(paths())).toEqual(await fingerprint(paths()));
  });

  it("notices a same-size edit that keeps the mtime", async () => {
    const file = path("/etc/pve/firewall/107.fw");
    const before = await fingerprint(paths());
    const { atime, mtime } = await stat(file);
    await writeFile(file, "guest 107 RULES");
    await utimes(file, atime, mtime);
    const after = await fingerprint(paths());
    expect(after.get("firewall/107.fw")).not.toBe(before.get("firewall/107.fw"));
    expect([...after.keys()]).toEqual([...before.keys()]);
  });

  it.each([
    ["config", "/etc/pve-nat/pve-nat.conf", `${CONF}hairpin = yes\n`],
    ["firewall/cluster.fw", "/etc/pve/firewall/cluster.fw", "x"],
    ["nodes/pve1/host.fw", "/etc/pve/nodes/pve1/host.fw", "x"],
    ["nodes/pve1/lxc/105.conf", "/etc/pve/nodes/pve1/lxc/105.conf", "hostname: other\n"],
    ["firewall/105.fw", "/etc/pve/firewall/105.fw", "new file"],
  ])("notices a change of %s", async (key, abs, text) => {
    const before = await fingerprint(paths());
    await put(abs, text);
    const after = await fingerprint(paths());
    expect(after.get(key)).toBeDefined();
    expect(after.get(key)).not.toBe(before.get(key));
  });

  it("notices a new guest, a guest that starts and one that stops", async () => {
    const before = await fingerprint(paths());
    await put("/etc/pve/nodes/pve1/qemu-server/108.conf", "name: new\n");
    const added = await fingerprint(paths());
    expect(before.has("nodes/pve1/qemu-server/108.conf")).toBe(false);
    expect(added.has("nodes/pve1/qemu-server/108.conf")).toBe(true);
    expect(added.get("run:107")).toBe("stopped");
    const child = await startQemu(107);
    expect((await fingerprint(paths())).get("run:107")).toBe("running");
    // Killed, its pidfile left behind: a dead pid is not running.
    await child.kill9();
    expect((await fingerprint(paths())).get("run:107")).toBe("stopped");
  });

  it("ignores other nodes' guest configs", async () => {
    const before = await fingerprint(paths());
    await put("/etc/pve/nodes/pve2/qemu-server/200.conf", "name: changed\n");
    expect(await fingerprint(paths())).toEqual(before);
  });
});
