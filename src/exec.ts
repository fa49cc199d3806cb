// The one module that runs external commands (iptables, ip, conntrack, qm, pct): bounded in
// time, never through a shell, output captured. `run` never throws; the caller decides what a
// non-zero exit means. (The hook's fast path never runs a command, so execa loads lazily.)

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
  input?: string;
  timeoutMs?: number;
}

export async function run(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const { execa } = await import("execa");
  try {
    const r = await execa(cmd, [...args], {
      reject: false,
      timeout: opts.timeoutMs ?? 60_000,
      stripFinalNewline: false,
      ...(opts.input === undefined ? {} : { input: opts.input }),
    });
    const code = r.exitCode ?? null;
    return {
      code,
      stdout: String(r.stdout ?? ""),
      stderr: String(r.stderr ?? ""),
      timedOut: r.timedOut === true,
      failure:
        code === null ? (String(r.shortMessage ?? "could not run").split("\n")[0] ?? null) : null,
    };
  } catch (err) {
    return {
      code: null,
      stdout: "",
      stderr: "",
      timedOut: false,
      failure: err instanceof Error ? err.message : String(err),
    };
  }
}
