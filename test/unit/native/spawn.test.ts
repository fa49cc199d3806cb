// src/native/spawn.c: the daemon's posix_spawn. Exit status, both outputs, input of any size
// without deadlock, start failures as errno, deadline and output bound, the child's signal
// state, and no descriptor or thread left behind.
import { randomBytes } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { nativeWithTempDir } from "../../helpers/native.js";

const { ENOENT, EACCES } = os.constants.errno;
const { SIGTERM, SIGKILL } = os.constants.signals;
const MB = 1024 * 1024;

describe("native spawn", () => {
  const fx = nativeWithTempDir("pve-nat-spawn-");

  const sh = (script: string, input: Buffer | string | null = null, timeoutMs = 10_000) =>
    fx.native.spawn("/bin/sh", ["-c", script], input, timeoutMs, 100 * MB);

  it("gives the exit code, stdout and stderr, with the input on stdin", async () => {
    const r = await sh('read x; echo "out $x"; echo "err $x" >&2; exit 3', Buffer.from("hi\n"));
    expect({ ...r, stdout: r.stdout.toString(), stderr: r.stderr.toString() }).toEqual({
      code: 3,
      signal: null,
      stdout: "out hi\n",
      stderr: "err hi\n",
      timedOut: false,
      tooMuch: false,
      error: 0,
    });
    expect((await sh("exit 0")).code).toBe(0);
    expect((await sh("exit 255")).code).toBe(255);
  });

  it("passes args as they are (no shell) and takes the environment as it is now", async () => {
    const r = await fx.native.spawn("printf", ["%s|", "a b", "", "é$HOME"], null, 5000, MB);
    expect(r.stdout.toString()).toBe("a b||é$HOME|");
    process.env.PVE_NAT_SPAWN_TEST = "set after start";
    try {
      expect((await sh('printf %s "$PVE_NAT_SPAWN_TEST"')).stdout.toString()).toBe(
        "set after start",
      );
    } finally {
      delete process.env.PVE_NAT_SPAWN_TEST;
    }
  });

  it("echoes 8 MB of stdin back through cat: no deadlock, the exact bytes", async () => {
    const input = randomBytes(8 * MB);
    const r = await fx.native.spawn("cat", [], input, 30_000, 100 * MB);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(input.length);
    expect(r.stdout.equals(input)).toBe(true);
  });

  it("sends a string input as UTF-8, and an empty input as an immediate EOF", async () => {
    const text = `${"é€𝄞 ".repeat(100_000)}\n`;
    const r = await fx.native.spawn("cat", [], text, 10_000, 100 * MB);
    expect(r.stdout.toString("utf8")).toBe(text);
    expect((await fx.native.spawn("wc", ["-c"], "", 5000, MB)).stdout.toString().trim()).toBe("0");
  });

  it("sends an array of strings as lines, each followed by a newline, none joined in JS", async () => {
    // A restore payload as the renderer makes it: 24 000 lines at 1000 guests.
    const lines = Array.from(
      { length: 24_000 },
      (_, i) => `-A PVENAT-${i}-DNAT é ${"x".repeat(i % 300)}`,
    );
    const r = await fx.native.spawn("cat", [], lines, 10_000, 100 * MB);
    expect(r.code).toBe(0);
    expect(r.stdout.toString("utf8")).toBe(`${lines.join("\n")}\n`);
    expect((await fx.native.spawn("cat", [], ["", "", "a"], 5000, MB)).stdout.toString()).toBe(
      "\n\na\n",
    );
    expect((await fx.native.spawn("wc", ["-c"], [], 5000, MB)).stdout.toString().trim()).toBe("0");
  });

  it("without input, stdin is /dev/null", async () => {
    const r = await sh("readlink /proc/self/fd/0; cat");
    expect(r.stdout.toString()).toBe("/dev/null\n");
    expect(r.code).toBe(0);
  });

  it("a command that exits without reading its input is a normal exit", async () => {
    const big = Buffer.alloc(8 * MB, 0x61);
    expect(await fx.native.spawn("true", [], big, 10_000, MB)).toMatchObject({ code: 0, error: 0 });
    const r = await fx.native.spawn("head", ["-c", "3"], big, 10_000, MB);
    expect(r).toMatchObject({ code: 0, error: 0, timedOut: false });
    expect(r.stdout.toString()).toBe("aaa");
  });

  it("a missing binary: error ENOENT, code null, empty output", async () => {
    for (const file of ["/nonexistent/pve-nat-no-such-command", "pve-nat-no-such-command"]) {
      expect(await fx.native.spawn(file, ["x"], Buffer.from("in"), 5000, MB)).toEqual({
        code: null,
        signal: null,
        stdout: Buffer.alloc(0),
        stderr: Buffer.alloc(0),
        timedOut: false,
        tooMuch: false,
        error: ENOENT,
      });
    }
    const notExecutable = path.join(fx.dir, "not-executable");
    writeFileSync(notExecutable, "#!/bin/sh\n");
    chmodSync(notExecutable, 0o644);
    expect((await fx.native.spawn(notExecutable, [], null, 5000, MB)).error).toBe(EACCES);
  });

  it("times out: SIGTERM at the deadline, timedOut, well before the command would end", async () => {
    const t0 = Date.now();
    const r = await fx.native.spawn("sleep", ["5"], null, 200, MB);
    const took = Date.now() - t0;
    expect(r).toMatchObject({ code: null, signal: SIGTERM, timedOut: true, error: 0 });
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(3000);
  });

  it("SIGKILL 2 s after the SIGTERM when it is ignored; a grandchild holding the pipes is not waited for", async () => {
    const t0 = Date.now();
    // sh ignores TERM and so does its sleep, which keeps stdout open after sh is killed.
    const r = await sh("trap '' TERM; echo started; sleep 6; echo never", null, 200);
    const took = Date.now() - t0;
    expect(r).toMatchObject({ code: null, signal: SIGKILL, timedOut: true });
    expect(r.stdout.toString()).toBe("started\n");
    expect(took).toBeGreaterThanOrEqual(2100);
    expect(took).toBeLessThan(4500);
  }, 10_000);

  it("the deadline holds for a command that closed its outputs and keeps running", async () => {
    const t0 = Date.now();
    const r = await sh("exec >&- 2>&-; sleep 5", null, 300);
    expect(r).toMatchObject({ code: null, signal: SIGTERM, timedOut: true });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("a command killed by a signal: code null, the signal's number", async () => {
    const r = await sh("echo before; kill -9 $$");
    expect(r).toMatchObject({ code: null, signal: SIGKILL, timedOut: false, tooMuch: false });
    expect(r.stdout.toString()).toBe("before\n");
  });

  it("more output than the bound, on either stream: tooMuch, killed, stops reading", async () => {
    const out = await fx.native.spawn("yes", [], null, 10_000, MB);
    expect(out).toMatchObject({ code: null, signal: SIGKILL, tooMuch: true, timedOut: false });
    expect(out.stdout.length).toBeGreaterThan(MB);
    expect(out.stdout.length).toBeLessThan(2 * MB);
    const err = await sh("yes >&2", null);
    expect(err.stderr.length).toBeLessThan(101 * MB);
    const small = await fx.native.spawn("yes", [], null, 10_000, 1000);
    expect(small).toMatchObject({ tooMuch: true, signal: SIGKILL });
    // Exactly the bound is not too much.
    const exact = await fx.native.spawn("head", ["-c", "1000", "/dev/zero"], null, 5000, 1000);
    expect(exact).toMatchObject({ code: 0, tooMuch: false });
    expect(exact.stdout.length).toBe(1000);
  });

  it("the child starts with every signal at its default and none blocked", async () => {
    // Node ignores SIGPIPE; without the reset, yes would fail with "Broken pipe" on stderr.
    const pipe = await sh("yes | head -1");
    expect(pipe).toMatchObject({ code: 0, timedOut: false });
    expect(pipe.stdout.toString()).toBe("y\n");
    expect(pipe.stderr.toString()).toBe("");
    const status = await fx.native.spawn("cat", ["/proc/self/status"], null, 5000, MB);
    const mask = (name: string) =>
      BigInt(
        `0x${new RegExp(`^${name}:\\s*([0-9a-f]+)`, "m").exec(status.stdout.toString())?.[1]}`,
      );
    expect(mask("SigBlk")).toBe(0n);
    // Signals 1-31 (bit n-1 = signal n), as libuv resets them. glibc's posix_spawn leaves its
    // two internal signals (32, 33) ignored; no command pve-nat runs uses them.
    expect(mask("SigIgn") & 0x7fffffffn).toBe(0n);
  });

  it("leaks no descriptor over 200 spawns of every kind", async () => {
    const fds = () => readdirSync("/proc/self/fd").length;
    // Warm up (the first call may open what stays open: the addon's own state, none expected).
    await sh("true");
    const before = fds();
    for (let i = 0; i < 200; i++) {
      switch (i % 5) {
        case 0:
          await sh("echo out; echo err >&2");
          break;
        case 1:
          await fx.native.spawn("cat", [], Buffer.alloc(200_000, 1), 5000, MB);
          break;
        case 2:
          await fx.native.spawn("pve-nat-no-such-command", [], Buffer.from("x"), 5000, MB);
          break;
        case 3:
          await fx.native.spawn("yes", [], null, 5000, 10_000);
          break;
        default:
          await fx.native.spawn("true", [], Buffer.alloc(300_000), 5000, MB);
      }
    }
    expect(fds()).toBe(before);
  }, 60_000);

  it("returns its memory: 60 runs of 4 MB in and out leave RSS where it was", async () => {
    const input = Buffer.alloc(4 * MB, 0x62);
    const run = () => fx.native.spawn("cat", [], input, 10_000, 100 * MB);
    for (let i = 0; i < 5; i++) await run();
    const rss = () => {
      const line = readFileSync("/proc/self/status", "utf8").match(/^VmRSS:\s+(\d+)/m);
      return Number(line?.[1]) * 1024;
    };
    const before = rss();
    for (let i = 0; i < 60; i++) {
      const r = await run();
      expect(r.stdout.length).toBe(input.length);
    }
    // Kept copies would be ≥ 480 MB (input and output copy per run); garbage Buffers not yet
    // collected count too, hence a loose bound.
    expect(rss() - before).toBeLessThan(200 * MB);
  }, 60_000);

  it("runs many commands at once, each with its own thread, none blocking the threadpool", async () => {
    const t0 = Date.now();
    const runs = Array.from({ length: 40 }, (_, i) =>
      sh(`sleep 0.5; echo ${i}; echo e${i} >&2; exit ${i % 7}`),
    );
    // fs.promises runs on the libuv threadpool (4 threads): it must not wait behind them.
    const f0 = Date.now();
    await readFile("/proc/self/status");
    const fsMs = Date.now() - f0;
    const rs = await Promise.all(runs);
    const took = Date.now() - t0;
    rs.forEach((r, i) => {
      expect(r.code).toBe(i % 7);
      expect(r.stdout.toString()).toBe(`${i}\n`);
      expect(r.stderr.toString()).toBe(`e${i}\n`);
    });
    expect(fsMs).toBeLessThan(400);
    // One after the other (or 4 at a time) would take ≥ 5 s.
    expect(took).toBeLessThan(4000);
  }, 20_000);

  it("refuses bad arguments", () => {
    const spawn = fx.native.spawn as (...a: unknown[]) => unknown;
    expect(() => spawn("true", [])).toThrow(/spawn\(/);
    expect(() => spawn(1, [], null, 1, 1)).toThrow(/file/);
    expect(() => spawn("true", "x", null, 1, 1)).toThrow(/args/);
    expect(() => spawn("true", [1], null, 1, 1)).toThrow(/args/);
    expect(() => spawn("true", ["a\0b"], null, 1, 1)).toThrow(/NUL/);
    expect(() => spawn("true", [], 5, 1, 1)).toThrow(/input/);
    expect(() => spawn("true", [], ["a", 1], 1, 1)).toThrow(/input/);
    expect(() => spawn("true", [], {}, 1, 1)).toThrow(/input/);
    expect(() => spawn("true", [], null, -1, 1)).toThrow(/timeoutMs/);
    expect(() => spawn("true", [], null, 1, Number.NaN)).toThrow(/maxOutputBytes/);
  });
});
