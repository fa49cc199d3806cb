// src/exec.ts: the one way external commands run. Never throws; exit code, output, timeouts
// and spawn failures come back as values.
import { describe, expect, it } from "vitest";
import { createOutputMemo, run } from "../../../src/exec.js";

describe("run", () => {
  it("returns the exit code and both outputs, with the input on stdin", async () => {
    const r = await run("sh", ["-c", 'read x; echo "out $x"; echo "err $x" >&2; exit 3'], {
      input: "hello\n",
    });
    expect(r).toEqual({
      code: 3,
      stdout: "out hello\n",
      stderr: "err hello\n",
      timedOut: false,
      failure: null,
    });
  });

  it("keeps output whole (a large iptables-save) and multi-byte text intact", async () => {
    const r = await run("sh", [
      "-c",
      'i=0; while [ $i -lt 20000 ]; do echo "-A PVENAT-$i é"; i=$((i+1)); done',
    ]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(20001);
    expect(lines[19999]).toBe("-A PVENAT-19999 é");
  });

  it("a command that does not exist: code null and why, no throw", async () => {
    const r = await run("/nonexistent/pve-nat-no-such-command", ["x"]);
    expect(r.code).toBeNull();
    expect(r.timedOut).toBe(false);
    expect(r.failure).toMatch(/ENOENT/);
  });

  it("times out: killed, code null, timedOut", async () => {
    const t0 = Date.now();
    const r = await run("sleep", ["5"], { timeoutMs: 200 });
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(r).toMatchObject({ code: null, timedOut: true });
    expect(r.failure).toMatch(/timed out/);
  });

  it("killed by a signal: code null and the signal named", async () => {
    const r = await run("sh", ["-c", "kill -9 $$"]);
    expect(r.code).toBeNull();
    expect(r.failure).toMatch(/SIGKILL/);
  });

  it("a command that ignores its input is still a normal exit", async () => {
    const r = await run("true", [], { input: "x".repeat(1_000_000) });
    expect(r.code).toBe(0);
  });

  it("with a memo: the same output gives back what the caller kept, a new one is decoded", async () => {
    const memo = createOutputMemo();
    const echo = (text: string) => run("printf", ["%s", text], { memo });
    expect((await echo("table v1")).stdout).toBe("table v1");
    expect(memo.stdout).toBe("table v1");
    // What the caller made of it comes back while the command prints the same bytes.
    memo.stdout = "parsed v1";
    expect((await echo("table v1")).stdout).toBe("parsed v1");
    expect((await echo("table v2")).stdout).toBe("table v2");
    expect(memo.stdout).toBe("table v2");
    // A failed run is its own output and leaves the memo alone.
    const failed = await run("sh", ["-c", "printf 'table v2'; exit 1"], { memo });
    expect(failed).toMatchObject({ code: 1, stdout: "table v2" });
    memo.stdout = "parsed v2";
    expect((await run("sh", ["-c", "printf 'table v3'; exit 1"], { memo })).stdout).toBe(
      "table v3",
    );
    expect((await echo("table v2")).stdout).toBe("parsed v2");
  });
});
