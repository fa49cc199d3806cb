// The one module that runs external commands (iptables, ip, conntrack, qm, pct): bounded in
// time and output, never through a shell, output captured. `run` never throws; the caller
// decides what a non-zero exit means.
//
// Two ways to start a command, one result. The daemon hands in its addon's posix_spawn
// (`useNativeSpawn`, src/native/spawn.c, issue 10): libuv starts children with fork(), which
// copies the parent's page tables on the main thread, so every iptables-restore cost more the
// bigger the daemon was (spawn→exit of /bin/true 1.6 ms at 50 MB RSS, 7.7 ms at 167 MB,
// 13.9 ms at 402 MB); posix_spawn (clone with CLONE_VM|CLONE_VFORK) costs the same at any
// size (scripts/spawn-cost.mjs: 5.6 vs 2.7 ms at 54 MB, 14.5 vs 2.7 ms at 301 MB), and the
// addon runs the whole command on a thread of its own. Without the addon (tests,
// the dev bundle, the CLI's short-lived processes) plain child_process.spawn: execa added
// 2–3 ms of JavaScript to every command on the bench machine (8.4 vs 5.6 ms spawn→close of
// /bin/true). Both give the same RunResult for the same command, failure texts included
// (test/unit/exec/native-run.test.ts). (The hook's fast path never runs a command, so
// child_process loads lazily.)

import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import os from "node:os";
import { getSystemErrorName } from "node:util";
import { type Input, inputText } from "./input.js";
import type { Native } from "./native/addon.js";

export interface RunResult {
  /** Exit code, or null when the command could not start, was killed or timed out. */
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Why it did not run or finish (spawn error, signal), when code is null. */
  failure: string | null;
}

export interface RunOptions {
  input?: Input;
  timeoutMs?: number;
  /** The command's last output: the same bytes again give the same string back, not decoded
   *  anew. For a large output read on a timer that rarely changes (the drift check's table
   *  read: ≈ 1.8 MB at 1000 guests every 30 s), where decoding, copying and comparing it again
   *  each time were most of the reader's work and its garbage made V8 collect its old
   *  generation after every read. Updated by each run that exits 0. */
  memo?: OutputMemo;
}

export interface OutputMemo {
  digest: string | null;
  /** What the last run returned; a caller may replace it with what it made of it (e.g. the
   *  output parsed or converted), which the next run with the same output then returns. */
  stdout: string;
}

export function createOutputMemo(): OutputMemo {
  return { digest: null, stdout: "" };
}

function digestOf(chunks: readonly Buffer[]): string {
  const h = createHash("sha256");
  for (const c of chunks) h.update(c);
  return h.digest("base64");
}

/** Output kept per stream; a command printing more is killed (iptables-save of 10 000 rules is
 *  ≈ 1.5 MB). */
export const MAX_OUTPUT_BYTES = 100 * 1024 * 1024;
/** After the timeout's SIGTERM, SIGKILL if the command is still there (spawn.c does the
 *  same with its own constant). */
const KILL_AFTER_MS = 2000;
const DEFAULT_TIMEOUT_MS = 60_000;

type NativeSpawn = Native["spawn"];
let nativeSpawn: NativeSpawn | null = null;

/** From now on `run` starts commands with the addon's posix_spawn (the daemon, once it loaded
 *  the addon); null goes back to child_process. */
export function useNativeSpawn(spawn: NativeSpawn | null): void {
  nativeSpawn = spawn;
}

export async function run(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  if (nativeSpawn) return runNative(nativeSpawn, cmd, args, opts);
  const { spawn } = await import("node:child_process");
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, [...args], {
        stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        shell: false,
        windowsHide: true,
      });
    } catch (err) {
      resolve(notRun(err));
      return;
    }
    let timedOut = false;
    let tooMuch = false;
    let spawnError: unknown = null;
    let killTimer: NodeJS.Timeout | null = null;
    const kill = () => {
      child.kill("SIGTERM");
      killTimer ??= setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const collect = (stream: NodeJS.ReadableStream | null): Buffer[] => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      stream?.on("data", (d: Buffer) => {
        bytes += d.length;
        if (bytes > MAX_OUTPUT_BYTES) {
          tooMuch = true;
          kill();
        } else chunks.push(d);
      });
      return chunks;
    };
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    child.on("error", (e) => {
      spawnError = e;
    });
    // 'close': the process is gone and its output fully read.
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      const r = ended(cmd, opts, { code, signal, timedOut, tooMuch, out, err });
      // A spawn failure (ENOENT, EACCES) closes with a negative errno as its "code".
      if (spawnError !== null && !timedOut && !tooMuch) {
        resolve({ ...notRun(spawnError), stdout: r.stdout, stderr: r.stderr });
        return;
      }
      resolve(r);
    });
    if (opts.input !== undefined && child.stdin) {
      // A command that exits without reading its input closes the pipe: not our failure.
      child.stdin.on("error", () => {});
      child.stdin.end(inputText(opts.input));
    }
  });
}

/** Signal number → name ("SIGKILL"), as child_process reports it. */
let signalNames: Map<number, string> | null = null;
function signalName(n: number): string | null {
  signalNames ??= new Map(Object.entries(os.constants.signals).map(([k, v]) => [v, k]));
  return signalNames.get(n) ?? null;
}

/** The errors child_process reports as an 'error' event with the command's name; any other
 *  start failure it throws from spawn() without it (node:internal/child_process). */
const REPORTED_WITH_NAME = new Set(["EACCES", "EAGAIN", "EMFILE", "ENFILE", "ENOENT"]);

async function runNative(
  spawn: NativeSpawn,
  cmd: string,
  args: readonly string[],
  opts: RunOptions,
): Promise<RunResult> {
  let r: Awaited<ReturnType<NativeSpawn>>;
  try {
    r = await spawn(
      cmd,
      args,
      opts.input ?? null,
      opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      MAX_OUTPUT_BYTES,
    );
  } catch (err) {
    return notRun(err);
  }
  if (r.error !== 0) {
    const name = getSystemErrorName(-r.error);
    return notRun(
      new Error(REPORTED_WITH_NAME.has(name) ? `spawn ${cmd} ${name}` : `spawn ${name}`),
    );
  }
  return ended(cmd, opts, {
    code: r.code,
    signal: r.signal === null ? null : signalName(r.signal),
    timedOut: r.timedOut,
    tooMuch: r.tooMuch,
    out: [r.stdout],
    err: [r.stderr],
  });
}

/** How a command that ran ended, whichever way it was started. */
interface Ending {
  code: number | null;
  /** The signal's name ("SIGKILL") when one ended it. */
  signal: string | null;
  timedOut: boolean;
  tooMuch: boolean;
  out: readonly Buffer[];
  err: readonly Buffer[];
}

/** Both spawners' result: output decoded (through the memo after a clean exit 0), and a
 *  failure text when the command did not end by itself. */
function ended(cmd: string, opts: RunOptions, e: Ending): RunResult {
  const { code, timedOut, tooMuch } = e;
  const memo = code === 0 && !timedOut && !tooMuch ? opts.memo : undefined;
  let stdout: string;
  if (memo) {
    const digest = digestOf(e.out);
    if (digest !== memo.digest) {
      memo.digest = digest;
      memo.stdout = text(e.out);
    }
    stdout = memo.stdout;
  } else stdout = text(e.out);
  const failed = timedOut || tooMuch || code === null;
  return {
    code: failed ? null : code,
    stdout,
    stderr: text(e.err),
    timedOut,
    failure: !failed
      ? null
      : timedOut
        ? `${cmd} timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
        : tooMuch
          ? `${cmd} printed more than ${MAX_OUTPUT_BYTES} bytes`
          : `${cmd} was killed by ${e.signal ?? "a signal"}`,
  };
}

/** The chunks as UTF-8; one chunk (the addon's whole output) without a copy. */
function text(chunks: readonly Buffer[]): string {
  return chunks.length === 1
    ? (chunks[0] as Buffer).toString("utf8")
    : Buffer.concat(chunks).toString("utf8");
}

function notRun(err: unknown): RunResult {
  return {
    code: null,
    stdout: "",
    stderr: "",
    timedOut: false,
    failure: err instanceof Error ? err.message : String(err),
  };
}
