// Child processes for the bench: bounded, timed from spawn() to exit, and a tracked background
// process whose stdout is read line by line (the daemon's JSON log).
import { type ChildProcess, spawn } from "node:child_process";

export interface Timed {
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment for every measured process. NODE_EXTRA_CA_CERTS is dropped: Node 20 parses the
 *  file eagerly (+≈50 ms per start on these machines), which would inflate `node -e 0` and so
 *  the hook target; a Proxmox host does not set it. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_OPTIONS;
  return env;
}

const ENV = cleanEnv();

/** Runs argv (stdin = input), timed from just before spawn() to the exit event. Never throws;
 *  a process past timeoutMs is killed and reported with code null. */
export function timed(argv: readonly string[], input?: string, timeoutMs = 30_000): Promise<Timed> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("timed: empty argv");
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: ENV,
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    let done = false;
    const finish = (code: number | null, extra = "") => {
      if (done) return;
      done = true;
      const ms = performance.now() - t0;
      clearTimeout(timer);
      resolve({ ms, code, stdout, stderr: stderr + extra });
    };
    child.on("error", (err) => finish(null, String(err)));
    // 'exit', not 'close': the process is gone; its pipes may flush a moment later.
    child.on("exit", (code) => finish(code));
    if (input !== undefined) {
      child.stdin?.on("error", () => {});
      child.stdin?.end(input);
    }
  });
}

/** Like timed(), but throws on a non-zero exit; returns stdout. */
export async function runOk(
  argv: readonly string[],
  input?: string,
  timeoutMs = 120_000,
): Promise<string> {
  const r = await timed(argv, input, timeoutMs);
  if (r.code !== 0) {
    throw new Error(`${argv.join(" ")} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 500)}`);
  }
  // 'exit' may precede the last stdout chunk; wait a turn for the pipe to drain.
  await new Promise((res) => setImmediate(res));
  return r.stdout;
}

export interface Background {
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  alive(): boolean;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** A long-running process; onLine gets each stdout line with its arrival time. */
export function background(
  argv: readonly string[],
  onLine?: (line: string, at: number) => void,
  onErrLine?: (line: string) => void,
  extraEnv: Readonly<Record<string, string>> = {},
): Background {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("background: empty argv");
  const child = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...ENV, ...extraEnv },
  });
  if (child.pid === undefined) throw new Error(`cannot start ${cmd}`);
  const split = (cb: ((l: string, at: number) => void) | undefined) => {
    let buf = "";
    return (d: Buffer) => {
      const at = performance.now();
      buf += d.toString();
      let i = buf.indexOf("\n");
      while (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        cb?.(line, at);
        i = buf.indexOf("\n");
      }
    };
  };
  child.stdout?.on("data", split(onLine));
  child.stderr?.on("data", split(onErrLine ? (l) => onErrLine(l) : undefined));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code) => {
      exitCode = code;
      resolve(code);
    });
    child.on("error", () => {
      exitCode = null;
      resolve(null);
    });
  });
  return {
    child,
    pid: child.pid,
    exited,
    alive: () => exitCode === undefined,
    async stop(signal = "SIGTERM", graceMs = 5000) {
      if (exitCode !== undefined) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/** Polls check() every stepMs until it is true or timeoutMs passes; returns whether it held. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  stepMs = 50,
): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > end) return false;
    await sleep(stepMs);
  }
}
