// The few error kinds pve-nat distinguishes. The CLI maps them to exit codes in one place
// (`exitCodeFor`, used by main.ts); the daemon logs them and keeps running.

/** Bad input from a file the admin wrote: names the file (and line when known). */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    message: string,
    readonly file: string,
    readonly line = 0,
  ) {
    super(line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`);
  }
}

/** Wrong use of the command line. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A command pve-nat ran (iptables-restore, qm, ...) failed; carries what it printed. */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** The daemon could not be reached or answered with an error. */
export class BusError extends Error {
  override name = "BusError";
}

/** `check` exit codes (SPEC §6): 0 no error, 1 errors found, 2 could not run. */
export const EXIT_OK = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_FAILURE = 2;

/** The daemon refuses work after `pve-nat flush` until `apply --all`. */
export class PausedError extends Error {
  override name = "PausedError";
  constructor() {
    super("pve-nat is paused after `pve-nat flush`; run `pve-nat apply --all` to resume");
  }
}

/** The exit code and message for an error that ended a command: the one mapping the CLI uses.
 *  Every failure of a command is "could not run" (2); findings (`check`'s 1) are not errors. */
export function exitFor(err: unknown): { code: number; message: string } {
  if (err instanceof CommandError) {
    const detail = err.stderr.trim().split("\n").slice(0, 3).join("\n");
    return {
      code: EXIT_FAILURE,
      message: detail && !err.message.includes(detail) ? `${err.message}\n${detail}` : err.message,
    };
  }
  // ConfigError, UsageError, BusError, PausedError and anything unexpected: their message
  // already names the file, flag or daemon state.
  return { code: EXIT_FAILURE, message: err instanceof Error ? err.message : String(err) };
}
