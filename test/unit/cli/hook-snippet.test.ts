// hooks/pve-nat-hook, the POSIX sh snippet Proxmox runs: pve-nat first, then a chained script.
import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const SNIPPET = path.resolve("hooks/pve-nat-hook");
let dir: string;
let log: string;
let fakeBin: string;
let chainDir: string;

async function script(file: string, body: string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "pvenat-snippet-"));
  log = path.join(dir, "log");
  chainDir = path.join(dir, "chain");
  // Stand-in pve-nat: records its arguments, exits with $PVE_NAT_FAKE_RC.
  fakeBin = await script(
    path.join(dir, "pve-nat"),
    `echo "pve-nat $*" >> "${log}"\nexit "\${PVE_NAT_FAKE_RC:-0}"`,
  );
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runSnippet(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync("sh", [SNIPPET, ...args], {
    env: { PATH: process.env.PATH, PVE_NAT_BIN: fakeBin, PVE_NAT_CHAIN_DIR: chainDir, ...env },
    encoding: "utf8",
    timeout: 10_000,
  });
  return { code: r.status, stderr: r.stderr };
}

const calls = async () => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);

async function chain(vmid: number, volid: string, file: string): Promise<void> {
  await mkdir(chainDir, { recursive: true });
  await writeFile(path.join(chainDir, String(vmid)), `${volid}\n${file}\n`);
}

describe("pve-nat-hook snippet", () => {
  it("runs pve-nat hook with Proxmox's arguments and exits 0", async () => {
    expect(runSnippet(["107", "pre-start"])).toEqual({ code: 0, stderr: "" });
    expect(await calls()).toEqual(["pve-nat hook 107 pre-start"]);
  });

  it("exits 0 even if pve-nat fails", async () => {
    expect(runSnippet(["107", "pre-start"], { PVE_NAT_FAKE_RC: "2" }).code).toBe(0);
  });

  it("exits 0 when the pve-nat binary is gone (package removed)", async () => {
    expect(runSnippet(["107", "pre-start"], { PVE_NAT_BIN: path.join(dir, "missing") })).toEqual({
      code: 0,
      stderr: "",
    });
  });

  it("runs the chained script after pve-nat, with the same arguments, returning its status", async () => {
    const prev = await script(
      path.join(dir, "snippets/backup.pl"),
      `echo "prev $*" >> "${log}"\nexit 3`,
    );
    await chain(107, "local:snippets/backup.pl", prev);
    expect(runSnippet(["107", "pre-start"]).code).toBe(3);
    expect(await calls()).toEqual(["pve-nat hook 107 pre-start", "prev 107 pre-start"]);
  });

  it("returns 0 when the chained script succeeds, and only chains the guest it was recorded for", async () => {
    const prev = await script(path.join(dir, "snippets/ok.sh"), `echo "prev $*" >> "${log}"`);
    await chain(107, "local:snippets/ok.sh", prev);
    expect(runSnippet(["107", "post-stop"]).code).toBe(0);
    expect(runSnippet(["108", "post-stop"]).code).toBe(0);
    expect(await calls()).toEqual([
      "pve-nat hook 107 post-stop",
      "prev 107 post-stop",
      "pve-nat hook 108 post-stop",
    ]);
  });

  it.each([
    ["pre-start", 1],
    ["post-start", 0],
    ["post-stop", 0],
  ])("a missing chained script fails %s as Proxmox would (exit %i)", async (phase, code) => {
    await chain(107, "local:snippets/gone.sh", path.join(dir, "snippets/gone.sh"));
    const r = runSnippet(["107", phase]);
    expect(r.code).toBe(code);
    expect(r.stderr).toContain("chained hookscript local:snippets/gone.sh");
  });

  it("ignores a vmid that is not a number (no path tricks)", async () => {
    await script(path.join(dir, "evil"), `echo evil >> "${log}"`);
    await chain(107, "x", path.join(dir, "evil"));
    expect(runSnippet(["../chain/107", "pre-start"]).code).toBe(0);
    expect(await calls()).toEqual(["pve-nat hook ../chain/107 pre-start"]);
  });

  it("is valid POSIX sh (dash)", () => {
    expect(spawnSync("dash", ["-n", SNIPPET]).status).toBe(0);
  });
});

describe("pve-firewall drop-in", () => {
  it("runs notify reload after start and on reload, never failing the unit", async () => {
    const text = await readFile("hooks/pve-firewall-pve-nat.conf", "utf8");
    const lines = text.split("\n").filter((l) => l && !l.startsWith("#"));
    expect(lines).toEqual([
      "[Service]",
      "ExecStartPost=-/usr/bin/pve-nat notify reload",
      "ExecReload=-/usr/bin/pve-nat notify reload",
    ]);
  });
});
