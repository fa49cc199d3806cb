// Run state the way Proxmox reads it (SPEC §7), against real processes and sockets.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { rooted } from "../../../src/paths.js";
import { cmdlineHasPidfile, isRunning } from "../../../src/pve/runstate.js";
import { prng } from "../../helpers/nodegen.js";

let root: string;
const path = (abs: string) => rooted(root, abs);
const children: ChildProcess[] = [];

/** A simulated qemu guest: a long-running process whose command line ends in `-pidfile <p>`.
 *  (node stops reading its own options at `--`; sleep would reject the extra arguments.) */
async function fakeQemu(pidfileInCmdline: string, flag = "-pidfile"): Promise<number> {
  const child = spawn(
    process.execPath,
    ["-e", "setTimeout(() => {}, 30000)", "--", flag, pidfileInCmdline],
    {
      stdio: "ignore",
    },
  );
  children.push(child);
  await new Promise((resolve) => child.once("spawn", resolve));
  return child.pid as number;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "pvenat-runstate-"));
  await mkdir(path("/var/run/qemu-server"), { recursive: true });
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("qemu run state", () => {
  it("no pid file → stopped", async () => {
    expect(await isRunning(path, 101, "qemu")).toBe(false);
  });

  it.each(["-pidfile", "--pidfile"])(
    "live process with %s <rooted pid file> → running",
    async (flag) => {
      const pidfile = path("/var/run/qemu-server/102.pid");
      const pid = await fakeQemu(pidfile, flag);
      await writeFile(pidfile, `${pid}\n`);
      expect(await isRunning(path, 102, "qemu")).toBe(true);
    },
  );

  it("after the process dies → stopped, even with the pid file left behind", async () => {
    const pidfile = path("/var/run/qemu-server/103.pid");
    const pid = await fakeQemu(pidfile);
    await writeFile(pidfile, `${pid}\n`);
    expect(await isRunning(path, 103, "qemu")).toBe(true);
    const child = children.pop() as ChildProcess;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    expect(await isRunning(path, 103, "qemu")).toBe(false);
  });

  it("a live pid of another process (recycled pid) → stopped", async () => {
    await writeFile(path("/var/run/qemu-server/104.pid"), `${process.pid}\n`);
    expect(await isRunning(path, 104, "qemu")).toBe(false);
  });

  it("a process whose -pidfile names another guest's file → stopped", async () => {
    const pid = await fakeQemu(path("/var/run/qemu-server/999.pid"));
    await writeFile(path("/var/run/qemu-server/105.pid"), `${pid}\n`);
    expect(await isRunning(path, 105, "qemu")).toBe(false);
  });

  it("the unrooted path in the command line does not count under --root", async () => {
    const pid = await fakeQemu("/var/run/qemu-server/106.pid");
    await writeFile(path("/var/run/qemu-server/106.pid"), `${pid}\n`);
    expect(await isRunning(path, 106, "qemu")).toBe(false);
  });

  it.each(["", "abc\n", "12 34\n", "-1\n"])("pid file %j → stopped", async (content) => {
    await writeFile(path("/var/run/qemu-server/107.pid"), content);
    expect(await isRunning(path, 107, "qemu")).toBe(false);
  });
});

describe("cmdlineHasPidfile: qemu-server's check, searched as bytes", () => {
  const P = "/var/run/qemu-server/100.pid";
  /** The check as qemu-server states it: split the command line at NULs, find the flag
   *  followed by the path. */
  const reference = (cmdline: string) => {
    const args = cmdline.split("\0");
    for (let i = 0; i < args.length - 1; i++)
      if ((args[i] === "-pidfile" || args[i] === "--pidfile") && args[i + 1] === P) return true;
    return false;
  };
  it.each([
    ["-pidfile and the path, NUL-terminated", `a\0-pidfile\0${P}\0`, true],
    ["--pidfile", `a\0--pidfile\0${P}\0-daemonize\0`, true],
    ["the path as the last argument without its NUL", `a\0-pidfile\0${P}`, true],
    ["-pidfile as the first argument", `-pidfile\0${P}\0`, true],
    ["a longer path that starts with it", `a\0-pidfile\0${P}2\0`, false],
    ["an argument that ends with -pidfile", `a\0x-pidfile\0${P}\0`, false],
    ["another flag before the path", `a\0-pidfile\0-x\0${P}\0`, false],
    ["the path alone", `a\0${P}\0`, false],
    ["nothing", "", false],
  ])("%s", (_, cmdline, want) => {
    expect(reference(cmdline)).toBe(want);
    expect(cmdlineHasPidfile(Buffer.from(cmdline), P)).toBe(want);
  });

  it("answers as the split for random command lines built from pieces of the match", () => {
    const r = prng(7);
    const pieces = ["-pidfile", "--pidfile", P, `${P}2`, "x", "", "-pidfile2", `x${P}`];
    for (let i = 0; i < 3000; i++) {
      const n = Math.floor(r() * 6);
      const args = Array.from({ length: n }, () => pieces[Math.floor(r() * pieces.length)]);
      const cmdline = args.join("\0") + (r() < 0.8 ? "\0" : "");
      // A view into a larger buffer, as the daemon's scratch buffer hands it over.
      const big = Buffer.from(`junk\0-pidfile\0${cmdline}`);
      const view = big.subarray(big.length - Buffer.byteLength(cmdline));
      expect(cmdlineHasPidfile(view, P), JSON.stringify(cmdline)).toBe(reference(cmdline));
    }
  });
});

describe("lxc run state", () => {
  // Abstract sockets are per network namespace and invisible to the file system; a listening
  // one in the test's namespace is harmless (no netfilter state is touched).
  const vmid = 900_000 + (process.pid % 99_999);
  let server: net.Server | null = null;
  afterEach(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(null)));
    server = null;
  });

  it("no command socket → stopped", async () => {
    expect(await isRunning(path, vmid, "lxc")).toBe(false);
  });

  it("abstract @/var/lib/lxc/<vmid>/command listening → running; closed → stopped", async () => {
    const s = net.createServer();
    server = s;
    await new Promise<void>((resolve) =>
      s.listen({ path: `\0/var/lib/lxc/${vmid}/command` }, resolve),
    );
    expect(await isRunning(path, vmid, "lxc")).toBe(true);
    expect(await isRunning(path, vmid + 1, "lxc")).toBe(false);
    await new Promise((resolve) => s.close(resolve));
    server = null;
    expect(await isRunning(path, vmid, "lxc")).toBe(false);
  });
});
