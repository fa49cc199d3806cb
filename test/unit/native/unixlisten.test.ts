// src/native/unixlisten.c: the daemon tells an LXC guest's run state from the abstract unix
// sockets listening in its namespace (sock_diag) instead of the whole /proc/net/unix text. The
// names must come out as /proc/net/unix shows them (NULs as '@', so a name padded with NULs
// still reads as pve-container would read it), for every listening socket and for no other.
// Checked in a namespace this test creates (SPEC §7), with socat listeners (the simulated LXC
// monitors of test/helpers/simnode.ts) and a driver that runs the addon there.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseListenerNames, parseUnixSockets } from "../../../src/pve/runstate.js";
import { nativeDriver } from "../../helpers/native.js";

const ns = `pvenat-unix-${randomBytes(3).toString("hex")}`;
let driver: ReturnType<typeof nativeDriver> | null = null;
const held: ChildProcess[] = [];

const DRIVER = `
const mod = { exports: {} };
process.dlopen(mod, process.argv[2]);
const net = require("node:net");
const fs = require("node:fs");
// A name with NULs inside (some programs pad names with NULs to the whole sun_path).
const padded = net.createServer().listen({ path: "\\0pvenat-nul\\0\\0x" }, () => {
  const listed = mod.exports.abstractListeners();
  const proc = fs.readFileSync("/proc/net/unix", "latin1");
  process.stdout.write(JSON.stringify({ listed, proc }));
  padded.close();
});
`;

function inNs(args: string[]): ChildProcess {
  const c = spawn("ip", ["netns", "exec", ns, ...args], { stdio: "ignore" });
  held.push(c);
  return c;
}

function listed(ns_: string): string[] {
  const unix = execFileSync("ip", ["netns", "exec", ns_, "cat", "/proc/net/unix"], {
    encoding: "utf8",
  });
  return [...parseUnixSockets(unix)];
}

async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 30));
  if (!ok()) throw new Error("socat listeners did not show up within 3 s");
}

beforeAll(async () => {
  execFileSync("ip", ["netns", "add", ns]);
  driver = nativeDriver(ns, DRIVER);
  inNs(["socat", "ABSTRACT-LISTEN:/var/lib/lxc/101/command,fork", "/dev/null"]);
  inNs(["socat", "ABSTRACT-LISTEN:/var/lib/lxc/102/command,fork", "/dev/null"]);
  // Bound, never listening (a datagram socket): /proc/net/unix lists it, the dump does not.
  inNs(["socat", "ABSTRACT-RECVFROM:/var/lib/lxc/103/command", "/dev/null"]);
  await until(() => listed(ns).length === 3);
});

afterAll(() => {
  for (const c of held) c.kill("SIGKILL");
  spawnSync("ip", ["netns", "del", ns]);
  driver?.dispose();
});

describe("abstractListeners (in a fresh namespace)", () => {
  it("names every listening abstract socket as /proc/net/unix does, and no other", () => {
    const [cmd, ...args] = driver?.argv ?? ["false"];
    const r = spawnSync(cmd as string, args, { encoding: "utf8", timeout: 10_000 });
    expect(r.status, r.stderr).toBe(0);
    const { listed: text, proc } = JSON.parse(r.stdout) as { listed: string | null; proc: string };
    expect(text).not.toBeNull();
    const names = parseListenerNames(text ?? "");
    const padded = [...parseUnixSockets(proc)].find((n) => n.startsWith("@pvenat-nul"));
    expect(padded).toMatch(/^@pvenat-nul@@x@*$/);
    expect([...names].sort()).toEqual(
      ["@/var/lib/lxc/101/command", "@/var/lib/lxc/102/command", padded].sort(),
    );
    // The same names /proc/net/unix gives, less the one that does not listen.
    const all = parseUnixSockets(proc);
    expect(all.has("@/var/lib/lxc/103/command")).toBe(true);
    all.delete("@/var/lib/lxc/103/command");
    expect(names).toEqual(all);
  });
});
