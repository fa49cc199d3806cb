// src/exec.ts with the addon's posix_spawn installed (the daemon in the single executable) gives
// the RunResult the child_process path gives for the same command: exit codes, output, failure
// texts and the output memo.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createOutputMemo,
  type RunOptions,
  type RunResult,
  run,
  useNativeSpawn,
} from "../../../src/exec.js";
import type { Native } from "../../../src/native/addon.js";
import { loadTestNative } from "../../helpers/native.js";

describe("run with the native spawn", () => {
  let native: Native;
  let dispose: () => void;
  let dir: string;
  let calls = 0;
  const counted: Native["spawn"] = (...a) => {
    calls++;
    return native.spawn(...a);
  };
  beforeAll(() => {
    ({ native, dispose } = loadTestNative());
    dir = mkdtempSync(path.join(os.tmpdir(), "pve-nat-native-run-"));
  });
  afterEach(() => useNativeSpawn(null));
  afterAll(() => {
    dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The same command through child_process, then through the addon (which must be used). */
  async function both(
    cmd: string,
    args: string[],
    opts: RunOptions = {},
  ): Promise<[RunResult, RunResult]> {
    useNativeSpawn(null);
    const node = await run(cmd, args, opts);
    useNativeSpawn(counted);
    const before = calls;
    const addon = await run(cmd, args, opts);
    useNativeSpawn(null);
    expect(calls).toBe(before + 1);
    return [node, addon];
  }

  it("success with input", async () => {
    const [node, addon] = await both("sh", ["-c", 'read x; echo "out $x é"'], { input: "hi\n" });
    expect(node).toEqual({
      code: 0,
      stdout: "out hi é\n",
      stderr: "",
      timedOut: false,
      failure: null,
    });
    expect(addon).toEqual(node);
  });

  it("input as lines (a restore payload as rendered): each line and its newline, both ways", async () => {
    const lines = ["*nat", ":PVENAT-101-DNAT - [0:0]", "-A PVENAT-101-DNAT -p tcp é", "COMMIT"];
    const [node, addon] = await both("cat", [], { input: lines });
    expect(node.stdout).toBe(`${lines.join("\n")}\n`);
    expect(addon).toEqual(node);
    const [none, noneAddon] = await both("wc", ["-c"], { input: [] });
    expect(none.stdout.trim()).toBe("0");
    expect(noneAddon).toEqual(none);
  });

  it("a non-zero exit with stderr", async () => {
    const [node, addon] = await both("sh", [
      "-c",
      "echo partial; echo 'no such table' >&2; exit 4",
    ]);
    expect(node).toEqual({
      code: 4,
      stdout: "partial\n",
      stderr: "no such table\n",
      timedOut: false,
      failure: null,
    });
    expect(addon).toEqual(node);
  });

  it("a command that does not exist (a path, a name looked up in PATH) or may not run", async () => {
    const notExecutable = path.join(dir, "not-executable");
    writeFileSync(notExecutable, "#!/bin/sh\n");
    chmodSync(notExecutable, 0o644);
    for (const cmd of ["/nonexistent/iptables-restore", "pve-nat-no-such-command", notExecutable]) {
      const [node, addon] = await both(cmd, ["-w", "10"], { input: "*nat\nCOMMIT\n" });
      expect(node).toMatchObject({ code: null, stdout: "", stderr: "", timedOut: false });
      expect(node.failure).toMatch(/^spawn .* (ENOENT|EACCES)$/);
      expect(addon).toEqual(node);
    }
  });

  it("a timeout", async () => {
    const [node, addon] = await both("sleep", ["5"], { timeoutMs: 200 });
    expect(node).toEqual({
      code: null,
      stdout: "",
      stderr: "",
      timedOut: true,
      failure: "sleep timed out after 200 ms",
    });
    expect(addon).toEqual(node);
  });

  it("killed by a signal: named as child_process names it", async () => {
    const [node, addon] = await both("sh", ["-c", "kill -TERM $$"]);
    expect(node.failure).toBe("sh was killed by SIGTERM");
    expect(addon).toEqual(node);
  });

  it("the output memo: the same bytes give back what the caller kept", async () => {
    // One memo per path, the same sequence of outputs through each.
    const memos = [createOutputMemo(), createOutputMemo()];
    const step = async (script: string, keep?: string) => {
      useNativeSpawn(null);
      const node = await run("sh", ["-c", script], { memo: memos[0] });
      useNativeSpawn(counted);
      const before = calls;
      const addon = await run("sh", ["-c", script], { memo: memos[1] });
      useNativeSpawn(null);
      expect(calls).toBe(before + 1);
      expect(addon).toEqual(node);
      expect(memos[1]).toEqual(memos[0]);
      if (keep !== undefined) for (const m of memos) m.stdout = keep;
      return addon.stdout;
    };
    expect(await step("printf 'table v1'", "parsed v1")).toBe("table v1");
    expect(await step("printf 'table v1'")).toBe("parsed v1");
    expect(await step("printf 'table v2'", "parsed v2")).toBe("table v2");
    // A failed run is its own output and leaves the memo alone.
    expect(await step("printf 'table v3'; exit 1")).toBe("table v3");
    expect(await step("printf 'table v2'")).toBe("parsed v2");
  });
});
