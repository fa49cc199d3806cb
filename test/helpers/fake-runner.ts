// A Runner that records restore payloads instead of running iptables (unit tests).
import { CommandError } from "../../src/errors.js";
import { inputText } from "../../src/input.js";
import type { Runner } from "../../src/iptables/runner.js";

export interface FakeRunner extends Runner {
  /** Every payload passed to restore(), in order (also the failed ones). */
  payloads: string[];
  /** What save() returns; tests may replace it to simulate live state or drift. */
  saved: { nat: string; raw: string };
  /** When set, the next restore() throws this CommandError once (after recording the payload). */
  failNext: CommandError | null;
}

export function fakeRunner(initialSave?: { nat?: string; raw?: string }): FakeRunner {
  const runner: FakeRunner = {
    backend: "nft",
    warning: undefined,
    payloads: [],
    saved: { nat: initialSave?.nat ?? "", raw: initialSave?.raw ?? "" },
    failNext: null,
    async restore(payload) {
      runner.payloads.push(inputText(payload));
      const err = runner.failNext;
      if (err) {
        runner.failNext = null;
        throw err;
      }
    },
    async save(table) {
      return runner.saved[table];
    },
  };
  return runner;
}

/** A CommandError as iptables-restore reports a rejected payload. */
export function restoreError(stderr = "iptables-restore: line 2 failed"): CommandError {
  return new CommandError(
    `iptables-nft-restore failed: ${stderr}`,
    "iptables-nft-restore",
    1,
    stderr,
  );
}
