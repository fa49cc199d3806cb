// Process helpers for tests, the bench and the demo: bounded commands, tracked background
// processes, commands inside a network namespace. Every command has a timeout; every background
// process is killed by its process group.
import { type ChildProcess, spawn } from "node:child_process";

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs argv, never throws; kills the whole process group when the timeout expires. */
export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("run: empty argv");
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child, "SIGKILL");
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + String(err), timedOut });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

export class CommandFailed extends Error {
  constructor(
    readonly argv: string[],
    readonly result: RunResult,
  ) {
    super(
      `command failed (${result.timedOut ? "timeout" : `exit ${result.code}`}): ${argv.join(" ")}\n${result.stderr.trim()}`,
    );
  }
}

/** Runs argv and returns stdout; throws CommandFailed on a non-zero exit or timeout. */
export async function runOk(argv: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0 || r.timedOut) throw new CommandFailed(argv, r);
  return r.stdout;
}

export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** A long-running process in its own process group; output is kept for diagnostics. */
export interface Background {
  readonly pid: number;
  readonly argv: string[];
  output(): string;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL to the whole group; resolves when it has exited. */
  kill9(): Promise<void>;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

export function spawnBackground(
  argv: string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): Background {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("spawnBackground: empty argv");
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: opts.env ?? process.env,
  });
  let out = "";
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<number | null>((resolve) => {
    child.on("close", (code) => resolve(code));
    child.on("error", () => resolve(null));
  });
  const alive = () => child.exitCode === null && child.signalCode === null;
  const waitOrKill = async (graceMs: number) => {
    const t = setTimeout(() => killGroup(child, "SIGKILL"), graceMs);
    await exited;
    clearTimeout(t);
  };
  if (child.pid === undefined) throw new Error(`spawn failed: ${argv.join(" ")}`);
  return {
    pid: child.pid,
    argv,
    output: () => out,
    alive,
    exited,
    async stop(graceMs = 3000) {
      if (!alive()) return;
      killGroup(child, "SIGTERM");
      await waitOrKill(graceMs);
    },
    async kill9() {
      if (!alive()) return;
      killGroup(child, "SIGKILL");
      await waitOrKill(1000);
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every intervalMs until it returns a truthy value or timeoutMs passes. */
export async function waitFor<T>(
  check: () => Promise<T | null | undefined | false>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<T | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() >= deadline) return null;
    await sleep(intervalMs);
  }
}

/** argv run inside network namespace ns (`ip netns exec` execs it: same pid), or as is for null. */
export function inNetns(ns: string | null, argv: string[]): string[] {
  return ns === null ? argv : ["ip", "netns", "exec", ns, ...argv];
}
