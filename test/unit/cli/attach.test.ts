// attach/detach against a simulated node: stand-in `qm`/`pct` on PATH record their arguments.
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runAttach, runDetach } from "../../../src/cli/attach.js";
import { contextFrom } from "../../../src/context.js";
import { UsageError } from "../../../src/errors.js";
import { buildBundle, runBundle } from "../../helpers/bundle.js";

let root: string;
let bin: string;
let log: string;
const savedPath = process.env.PATH;

const guests: Record<string, string> = {
  "qemu-server/107.conf": "name: web\nnet0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1\n",
  "qemu-server/108.conf": "name: db\nhookscript: local:snippets/backup.pl\n",
  "qemu-server/109.conf":
    "name: old\nhookscript: local:snippets/pve-nat-hook\n\n[snap1]\nhookscript: local:snippets/x\n",
  "lxc/200.conf": "hostname: ct\nhookscript: local:snippets/pve-nat-hook\n",
  "lxc/201.conf": "hostname: ct2\n",
  "lxc/202.conf": "hostname: ct3\nhookscript: nfs1:snippets/mine.sh\n",
};

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "pvenat-attach-"));
  bin = path.join(root, "bin");
  log = path.join(root, "calls.log");
  await mkdir(bin);
  for (const tool of ["qm", "pct"]) {
    // Records its call; fails with $FAIL_<tool> as output when that is set.
    const script = `#!/bin/sh
echo "${tool} $*" >> "${log}"
if [ -n "$FAIL_${tool.toUpperCase()}" ]; then echo "$FAIL_${tool.toUpperCase()}" >&2; exit 255; fi
`;
    await writeFile(path.join(bin, tool), script);
    await chmod(path.join(bin, tool), 0o755);
  }
  process.env.PATH = `${bin}:${savedPath}`;
  await mkdir(path.join(root, "etc/pve-nat"), { recursive: true });
  await writeFile(path.join(root, "etc/pve-nat/pve-nat.conf"), "node = pve1\n");
  for (const [file, text] of Object.entries(guests)) {
    const full = path.join(root, "etc/pve/nodes/pve1", file);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, text);
  }
  await writeFile(
    path.join(root, "etc/pve/storage.cfg"),
    "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nnfs: nfs1\n\tpath /mnt/pve/nfs1\n\tserver 10.0.0.1\n\tcontent snippets,images\n",
  );
});

afterEach(async () => {
  process.env.PATH = savedPath;
  delete process.env.FAIL_QM;
  delete process.env.FAIL_PCT;
  await rm(root, { recursive: true, force: true });
});

const ctx = () => contextFrom({ root });
/** A node's presence file as its daemon writes it (cluster/presence.ts). */
const PRESENCE = (node: string) =>
  `${JSON.stringify({ version: 1, node, pve_nat: "0.1.0", started: "", updated: "", forwards: [], more: 0 })}\n`;
const MEMBERS = (...nodes: string[]) =>
  JSON.stringify({
    nodename: "pve1",
    version: 5,
    cluster: { name: "c", version: 2, nodes: nodes.length, quorate: 1 },
    nodelist: Object.fromEntries(
      nodes.map((n, i) => [n, { id: i + 1, online: 1, ip: `198.51.100.${i + 1}` }]),
    ),
  });
const calls = async () => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
const chainPath = (vmid: number) => path.join(root, "etc/pve/pve-nat/chain", String(vmid));
const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

describe("attach", () => {
  it("sets the hookscript with qm for a VM and pct for a container", async () => {
    const results = await runAttach(ctx(), ["107", "201"], { chain: false, force: false });
    expect(results).toEqual([
      { vmid: 107, ok: true, message: "attached" },
      { vmid: 201, ok: true, message: "attached" },
    ]);
    expect(await calls()).toEqual([
      "qm set 107 --hookscript local:snippets/pve-nat-hook",
      "pct set 201 --hookscript local:snippets/pve-nat-hook",
    ]);
  });

  it("does nothing for a guest already attached (snapshot sections ignored)", async () => {
    const results = await runAttach(ctx(), ["109", "200"], { chain: false, force: false });
    expect(results).toEqual([
      { vmid: 109, ok: true, message: "already attached" },
      { vmid: 200, ok: true, message: "already attached" },
    ]);
    expect(await calls()).toEqual([]);
  });

  it("refuses a guest with another hookscript, naming both ways out", async () => {
    const [r] = await runAttach(ctx(), ["108"], { chain: false, force: false });
    expect(r).toEqual({
      vmid: 108,
      ok: false,
      message:
        "already has hookscript local:snippets/backup.pl; use --chain to keep it (pve-nat-hook runs it " +
        "after pve-nat, with the same arguments and exit status) or --force to replace it",
    });
    expect(await calls()).toEqual([]);
    expect(await exists(chainPath(108))).toBe(false);
  });

  it("--chain records the previous script where every node sees it, as sh-readable lines", async () => {
    const results = await runAttach(ctx(), ["108", "202"], { chain: true, force: false });
    expect(results).toEqual([
      {
        vmid: 108,
        ok: true,
        message: "attached, chained to local:snippets/backup.pl (runs after pve-nat)",
      },
      {
        vmid: 202,
        ok: true,
        message: "attached, chained to nfs1:snippets/mine.sh (runs after pve-nat)",
      },
    ]);
    expect(await readFile(chainPath(108), "utf8")).toBe(
      "local:snippets/backup.pl\n/var/lib/vz/snippets/backup.pl\n",
    );
    expect(await readFile(chainPath(202), "utf8")).toBe(
      "nfs1:snippets/mine.sh\n/mnt/pve/nfs1/snippets/mine.sh\n",
    );
    expect(await calls()).toEqual([
      "qm set 108 --hookscript local:snippets/pve-nat-hook",
      "pct set 202 --hookscript local:snippets/pve-nat-hook",
    ]);
  });

  it("--force replaces the other hookscript and leaves no chain", async () => {
    await mkdir(path.dirname(chainPath(108)), { recursive: true });
    await writeFile(chainPath(108), "local:snippets/stale\n/var/lib/vz/snippets/stale\n");
    const [r] = await runAttach(ctx(), ["108"], { chain: false, force: true });
    expect(r).toEqual({
      vmid: 108,
      ok: true,
      message: "attached, replacing local:snippets/backup.pl",
    });
    expect(await exists(chainPath(108))).toBe(false);
    expect(await calls()).toEqual(["qm set 108 --hookscript local:snippets/pve-nat-hook"]);
  });

  it("explains how to enable snippets when Proxmox refuses the volume, and undoes the chain", async () => {
    process.env.FAIL_QM =
      "400 Parameter verification failed.\nhookscript: 'local:snippets/pve-nat-hook' is not in the snippets directory";
    const [r] = await runAttach(ctx(), ["108"], { chain: true, force: false });
    expect(r?.ok).toBe(false);
    expect(r?.message).toContain(
      "qm set 108 --hookscript local:snippets/pve-nat-hook failed: 400 Parameter verification failed.",
    );
    expect(r?.message).toContain("pvesm set local --content iso,vztmpl,backup,snippets");
    expect(r?.message).toContain("/var/lib/vz/snippets/pve-nat-hook must exist and be executable");
    expect(await exists(chainPath(108))).toBe(false);
  });

  it("passes other qm failures through without the snippets advice", async () => {
    process.env.FAIL_QM = "VM is locked (backup)";
    const [r] = await runAttach(ctx(), ["107"], { chain: false, force: false });
    expect(r).toEqual({
      vmid: 107,
      ok: false,
      message: "qm set 107 --hookscript local:snippets/pve-nat-hook failed: VM is locked (backup)",
    });
  });

  it("--all attaches every local guest the compiler finds NAT rules for, running or not", async () => {
    const fw = path.join(root, "etc/pve/firewall");
    await mkdir(fw, { recursive: true });
    await writeFile(
      path.join(fw, "107.fw"),
      "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh\n",
    );
    await writeFile(
      path.join(fw, "201.fw"),
      "[RULES]\nOUT ACCEPT -p tcp -dport 53 # NAT: dns out\n",
    );
    // Not NAT rules: a plain comment, NATIVE, a disabled NAT rule.
    await writeFile(
      path.join(fw, "108.fw"),
      "[RULES]\nIN ACCEPT -p tcp -dport 22 # ssh\nIN ACCEPT -p tcp -dport 80 # NATIVE web\n|IN ACCEPT -p tcp -dport 81 # NAT off\n",
    );
    // A guest of another node with NAT rules is not ours.
    await mkdir(path.join(root, "etc/pve/nodes/pve2/qemu-server"), { recursive: true });
    await writeFile(path.join(root, "etc/pve/nodes/pve2/qemu-server/300.conf"), "name: far\n");
    // pve2 is a cluster member (its directory, no .members): it runs pve-nat too, or attach
    // would refuse (tested in "cluster members without pve-nat").
    await writeFile(path.join(root, "etc/pve/nodes/pve2/pve-nat.json"), PRESENCE("pve2"));
    await writeFile(
      path.join(fw, "300.fw"),
      "[RULES]\nIN ACCEPT -dest 10.10.10.3 -p tcp -dport 22 # NAT\n",
    );
    const results = await runAttach(ctx(), [], { all: true, chain: false, force: false });
    expect(results).toEqual([
      { vmid: 107, ok: true, message: "attached" },
      { vmid: 201, ok: true, message: "attached" },
    ]);
    expect(await calls()).toEqual([
      "qm set 107 --hookscript local:snippets/pve-nat-hook",
      "pct set 201 --hookscript local:snippets/pve-nat-hook",
    ]);
  });

  it("reports a guest that is not on this node", async () => {
    expect(await runAttach(ctx(), ["555"], { chain: false, force: false })).toEqual([
      { vmid: 555, ok: false, message: "no guest 555 on node pve1" },
    ]);
  });

  it.each<[string[], { chain: boolean; force: boolean; all?: boolean }, RegExp]>([
    [[], { chain: false, force: false }, /VMIDs, or --all/],
    [["abc"], { chain: false, force: false }, /not a VMID: "abc"/],
    [["107"], { chain: false, force: false, all: true }, /not both/],
    [["107"], { chain: true, force: true }, /exclude each other/],
  ])("usage error for %j %j", async (vmids, opts, message) => {
    const err = await runAttach(ctx(), vmids, opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(message);
  });
});

describe("cluster members without pve-nat (issue 12 item 2)", () => {
  const pve = (rel: string) => path.join(root, "etc/pve", rel);

  it("refuses while a member in .members has no presence file, naming it; nothing is set", async () => {
    await writeFile(pve(".members"), MEMBERS("pve1", "pve2", "pve3"));
    await writeFile(pve("nodes/pve1/pve-nat.json"), PRESENCE("pve1"));
    await mkdir(pve("nodes/pve3"), { recursive: true });
    await writeFile(pve("nodes/pve3/pve-nat.json"), PRESENCE("pve3"));
    const results = await runAttach(ctx(), ["107", "109"], { chain: false, force: false });
    expect(results[0]?.ok).toBe(false);
    expect(results[0]?.message).toMatch(
      /^not attached: cluster node pve2 lacks pve-nat \(no nodes\/pve2\/pve-nat\.json\)/,
    );
    expect(results[0]?.message).toContain("script 'local:snippets/pve-nat-hook' does not exist");
    expect(results[0]?.message).toMatch(/install pve-nat on pve2 first.*or use --force$/);
    // Already attached: nothing to refuse.
    expect(results[1]).toEqual({ vmid: 109, ok: true, message: "already attached" });
    expect(await calls()).toEqual([]);
  });

  it("the local node needs no presence file (attach runs there), a member with one is fine", async () => {
    await writeFile(pve(".members"), MEMBERS("pve1", "pve2"));
    await mkdir(pve("nodes/pve2"), { recursive: true });
    await writeFile(pve("nodes/pve2/pve-nat.json"), PRESENCE("pve2"));
    const results = await runAttach(ctx(), ["107"], { chain: false, force: false });
    expect(results).toEqual([{ vmid: 107, ok: true, message: "attached" }]);
  });

  it("without .members the nodes/ directories are the members", async () => {
    await mkdir(pve("nodes/pve4"), { recursive: true });
    const [r] = await runAttach(ctx(), ["107"], { chain: false, force: false });
    expect(r?.message).toMatch(/node pve4 lacks pve-nat/);
    expect(await calls()).toEqual([]);
  });

  it(".members wins over stale nodes/ directories (a removed node keeps its directory)", async () => {
    await writeFile(pve(".members"), MEMBERS("pve1"));
    await mkdir(pve("nodes/pve4"), { recursive: true });
    const [r] = await runAttach(ctx(), ["107"], { chain: false, force: false });
    expect(r).toEqual({ vmid: 107, ok: true, message: "attached" });
  });

  it("--force attaches anyway", async () => {
    await writeFile(pve(".members"), MEMBERS("pve1", "pve2"));
    const [r] = await runAttach(ctx(), ["107"], { chain: false, force: true });
    expect(r).toEqual({ vmid: 107, ok: true, message: "attached" });
    expect(await calls()).toEqual(["qm set 107 --hookscript local:snippets/pve-nat-hook"]);
  });
});

describe("detach", () => {
  it("deletes pve-nat's hookscript", async () => {
    expect(await runDetach(ctx(), ["109", "200"], {})).toEqual([
      { vmid: 109, ok: true, message: "detached" },
      { vmid: 200, ok: true, message: "detached" },
    ]);
    expect(await calls()).toEqual([
      "qm set 109 --delete hookscript",
      "pct set 200 --delete hookscript",
    ]);
  });

  it("restores a chained script and removes the chain entry", async () => {
    await mkdir(path.dirname(chainPath(109)), { recursive: true });
    await writeFile(chainPath(109), "local:snippets/backup.pl\n/var/lib/vz/snippets/backup.pl\n");
    expect(await runDetach(ctx(), ["109"], {})).toEqual([
      { vmid: 109, ok: true, message: "detached, local:snippets/backup.pl restored" },
    ]);
    expect(await calls()).toEqual(["qm set 109 --hookscript local:snippets/backup.pl"]);
    expect(await exists(chainPath(109))).toBe(false);
  });

  it("keeps the chain entry when qm fails", async () => {
    await mkdir(path.dirname(chainPath(109)), { recursive: true });
    await writeFile(chainPath(109), "local:snippets/backup.pl\n/var/lib/vz/snippets/backup.pl\n");
    process.env.FAIL_QM = "VM is locked";
    const [r] = await runDetach(ctx(), ["109"], {});
    expect(r).toEqual({
      vmid: 109,
      ok: false,
      message: "qm set 109 --hookscript local:snippets/backup.pl failed: VM is locked",
    });
    expect(await exists(chainPath(109))).toBe(true);
  });

  it("leaves other hookscripts and unattached guests alone", async () => {
    expect(await runDetach(ctx(), ["108", "107"], {})).toEqual([
      {
        vmid: 108,
        ok: true,
        message: "hookscript is local:snippets/backup.pl, not pve-nat's; left as is",
      },
      { vmid: 107, ok: true, message: "not attached" },
    ]);
    expect(await calls()).toEqual([]);
  });

  it("--all detaches every local guest that has pve-nat's hookscript", async () => {
    await runDetach(ctx(), [], { all: true });
    expect(await calls()).toEqual([
      "qm set 109 --delete hookscript",
      "pct set 200 --delete hookscript",
    ]);
  });
});

describe("the attach and detach commands", () => {
  let bundle: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ file: bundle, cleanup } = await buildBundle());
  });
  afterAll(async () => {
    await cleanup();
  });
  const env = () => ({ PATH: `${bin}:${savedPath}` });

  it("prints one line per guest and exits 1 when one was refused", async () => {
    const r = await runBundle(bundle, ["attach", "107", "108", "--root", root], env());
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("vm107: attached\n");
    expect(r.stderr).toMatch(
      /^vm108: already has hookscript local:snippets\/backup.pl; use --chain .* or --force to replace it\n$/,
    );
  });

  it("prints JSON with --json and exits 0 when all went well", async () => {
    const r = await runBundle(bundle, ["detach", "109", "--json", "--root", root], env());
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      version: 1,
      command: "detach",
      results: [{ vmid: 109, ok: true, message: "detached" }],
    });
    expect(await calls()).toEqual(["qm set 109 --delete hookscript"]);
  });

  it("exits 2 on a usage error", async () => {
    const r = await runBundle(
      bundle,
      ["attach", "--chain", "--force", "107", "--root", root],
      env(),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--chain and --force exclude each other");
  });
});
