// src/native/pidfd.c: a pidfd must say "running" exactly while its process has not exited (a
// zombie has), never for a pid that no process holds, and one poll must answer for many.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import os from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Native } from "../../../src/native/addon.js";
import { loadTestNative } from "../../helpers/native.js";

const { ESRCH } = os.constants.errno;

function sleeper(): ChildProcess {
  return spawn("sleep", ["30"], { stdio: "ignore" });
}

function exited(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve();
    else c.once("exit", () => resolve());
  });
}

describe("pidfd", () => {
  let native: Native;
  let dispose: () => void;
  const children: ChildProcess[] = [];
  beforeAll(() => {
    ({ native, dispose } = loadTestNative());
  });
  afterAll(() => {
    for (const c of children) c.kill("SIGKILL");
    dispose();
  });

  it("runs while the process does, and stops when it exits", async () => {
    const a = sleeper();
    const b = sleeper();
    children.push(a, b);
    const fds = Int32Array.of(native.pidfdOpen(a.pid as number), native.pidfdOpen(b.pid as number));
    expect(fds[0]).toBeGreaterThanOrEqual(0);
    expect(fds[1]).toBeGreaterThanOrEqual(0);
    const out = new Uint8Array(2);
    expect(native.pidfdsRunning(fds, out)).toBe(2);
    expect([...out]).toEqual([1, 1]);
    a.kill("SIGKILL");
    await exited(a);
    expect(native.pidfdsRunning(fds, out)).toBe(1);
    expect([...out]).toEqual([0, 1]);
    b.kill("SIGKILL");
    await exited(b);
    expect(native.pidfdsRunning(fds, out)).toBe(0);
    expect([...out]).toEqual([0, 0]);
    for (const fd of fds) native.closeFd(fd);
  });

  it("a zombie has exited", async () => {
    // The inner sleep exits at once; its parent (the exec'd outer sleep) never reaps it.
    const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 30"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    children.push(parent);
    const pid = await new Promise<number>((resolve) => {
      parent.stdout?.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    });
    let state = "";
    for (let i = 0; i < 100 && state !== "Z"; i++) {
      state = spawnSync("ps", ["-o", "stat=", "-p", String(pid)], { encoding: "utf8" })
        .stdout.trim()
        .slice(0, 1);
      if (state !== "Z") await new Promise((r) => setTimeout(r, 20));
    }
    expect(state).toBe("Z");
    const fd = native.pidfdOpen(pid);
    expect(fd).toBeGreaterThanOrEqual(0);
    const out = Uint8Array.of(1);
    expect(native.pidfdsRunning(Int32Array.of(fd), out)).toBe(0);
    expect(out[0]).toBe(0);
    native.closeFd(fd);
  });

  it("no process: -ESRCH; a negative fd is not running; bad arguments throw", async () => {
    const c = sleeper();
    const pid = c.pid as number;
    c.kill("SIGKILL");
    await exited(c);
    expect(native.pidfdOpen(pid)).toBe(-ESRCH);
    const out = Uint8Array.of(1, 1);
    expect(native.pidfdsRunning(Int32Array.of(-1, -1), out)).toBe(0);
    expect([...out]).toEqual([0, 0]);
    expect(native.pidfdsRunning(new Int32Array(0), new Uint8Array(0))).toBe(0);
    expect(() => native.pidfdOpen(0)).toThrow(TypeError);
    expect(() => native.pidfdsRunning(Int32Array.of(1), new Uint8Array(0))).toThrow(TypeError);
    expect(() => native.pidfdsRunning([1] as unknown as Int32Array, new Uint8Array(1))).toThrow(
      TypeError,
    );
    expect(() => native.closeFd(-1)).toThrow(TypeError);
  });
});
