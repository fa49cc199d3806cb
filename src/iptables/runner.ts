// The only module that runs iptables (through exec.ts). Everything pve-nat writes goes through one
// `iptables-restore --noflush` per change (atomic per table); reads are `iptables-save` (nf_tables
// without counters: `iptables -S`, given back in iptables-save's form).

import { realpathSync } from "node:fs";
import path from "node:path";
import { CommandError } from "../errors.js";
import { createOutputMemo, run as exec, type OutputMemo } from "../exec.js";
import type { Input } from "../input.js";
import type { Config } from "../model.js";
import { specToSave } from "./save.js";

export type Backend = "nft" | "legacy";

export interface Runner {
  backend: Backend;
  /** Why auto mode picked the backend Debian's alternatives do not select; else undefined. */
  warning?: string | undefined;
  /** One `iptables-restore --noflush` of payload (a text, or its lines as rendered). */
  restore(payload: Input): Promise<void>;
  /** The table as `iptables-save -t <table> [-c]` prints it. */
  save(table: "nat" | "raw", counters?: boolean): Promise<string>;
}

/** Seconds to wait for the xtables lock (pve-firewall holds it briefly every few seconds). */
const LOCK_WAIT_S = "10";
/** A hung iptables must not hang the daemon's queue forever. */
const TIMEOUT_MS = 60_000;

async function run(cmd: string, args: string[], input?: Input, memo?: OutputMemo): Promise<string> {
  const r = await exec(cmd, args, {
    timeoutMs: TIMEOUT_MS,
    ...(input === undefined ? {} : { input }),
    ...(memo === undefined ? {} : { memo }),
  });
  if (r.code !== 0) {
    const why = r.timedOut
      ? `timed out after ${TIMEOUT_MS} ms`
      : r.code === null
        ? (r.failure ?? "could not run")
        : (r.stderr.trim().split("\n")[0] ?? "") || `exit code ${r.code}`;
    throw new CommandError(`${cmd} ${args.join(" ")} failed: ${why}`, cmd, r.code, r.stderr);
  }
  return r.stdout;
}

/** Which backend plain `iptables` is (Debian alternatives), from `iptables --version`. */
export function backendOfVersion(text: string): Backend | null {
  if (/\(nf_tables\)/.test(text)) return "nft";
  if (/\(legacy\)/.test(text)) return "legacy";
  // iptables before 1.8 has no suffix and is legacy only.
  if (/^iptables v1\.[0-7]\./m.test(text)) return "legacy";
  return null;
}

/** Whether pve-firewall's chains exist in this backend (all existing tables; `-t` is avoided
 *  because legacy iptables would load a table module just to list it). */
async function hasPveFirewall(backend: Backend): Promise<boolean | null> {
  const out = await run(`iptables-${backend}-save`, []).catch(() => null);
  return out === null ? null : /^:PVEFW-/m.test(out);
}

/** Which backend an iptables executable is from the file it resolves to: Debian's alternatives
 *  link `iptables` to xtables-nft-multi or xtables-legacy-multi. null when the name does not
 *  say (another layout, a wrapper script): then only `iptables --version` tells. */
export function backendOfBinary(resolved: string): Backend | null {
  const name = path.basename(resolved);
  if (name === "xtables-nft-multi") return "nft";
  if (name === "xtables-legacy-multi") return "legacy";
  return null;
}

/** The file plain `iptables` resolves to on PATH (as exec.ts would run it); null if none. */
function resolvedIptables(): string | null {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir === "") continue;
    try {
      return realpathSync(path.join(dir, "iptables"));
    } catch {
      // not in this directory
    }
  }
  return null;
}

async function selectedBackend(): Promise<Backend> {
  const resolved = resolvedIptables();
  const byName = resolved === null ? null : backendOfBinary(resolved);
  if (byName) return byName;
  const version = await run("iptables", ["--version"]);
  const selected = backendOfVersion(version);
  if (!selected) {
    throw new CommandError(
      `cannot tell the iptables backend from "${version.trim()}"`,
      "iptables",
      0,
      "",
    );
  }
  return selected;
}

/** A token from the kernel that stays the same while every table of the backend reads the same
 *  (src/native/tables.c); null when it cannot tell. */
export type BackendToken = (backend: Backend) => string | null;

export type DetectBackend = (
  mode: Config["iptables"],
) => Promise<{ backend: Backend; warning?: string }>;

/** The backend pve-nat should write to now (SPEC §4): `iptables = nft|legacy` as configured;
 *  `auto` the one Debian's alternatives select, unless pve-firewall's PVEFW- chains are only in
 *  the other (then that one, with a warning).
 *
 *  The daemon asks before every drift check (every 30 s), and each answer used to cost
 *  `iptables --version` and a full `iptables-save` of a backend, two when the selected one
 *  lacked pve-firewall's chains: at 1000 guests the nf_tables save alone took 0.26 s of CPU
 *  (issue 10), to find what it found 30 s before. So the selected backend is read from where
 *  `iptables` resolves when its name says, and, given `token`, a backend's tables are saved
 *  again only when its token moved since the save whose answer is kept (the token is taken
 *  before the save: a change during it moves the next token). */
export function backendDetector(
  opts: {
    token?: BackendToken;
    /** Tests replace the reads: the backend `iptables` selects, and a save's answer (null:
     *  the save failed, which counts as "no chains" and is asked again next time). */
    selected?: () => Promise<Backend>;
    hasPveFirewall?: (backend: Backend) => Promise<boolean | null>;
  } = {},
): DetectBackend {
  const {
    token,
    selected: select = selectedBackend,
    hasPveFirewall: probe = hasPveFirewall,
  } = opts;
  const known = new Map<Backend, { token: string; has: boolean }>();
  async function has(backend: Backend): Promise<boolean> {
    const t = token?.(backend) ?? null;
    const k = known.get(backend);
    if (t !== null && k?.token === t) return k.has;
    const answer = await probe(backend);
    if (t === null || answer === null) known.delete(backend);
    else known.set(backend, { token: t, has: answer });
    return answer === true;
  }
  return async (mode) => {
    if (mode !== "auto") return { backend: mode };
    const selected = await select();
    const other: Backend = selected === "nft" ? "legacy" : "nft";
    if (!(await has(selected)) && (await has(other))) {
      return {
        backend: other,
        warning: `iptables selects ${selected}, but pve-firewall's PVEFW- chains are in ${other}: using iptables-${other} (set iptables = ${other} to silence this)`,
      };
    }
    return { backend: selected };
  };
}

/** detectBackend without memory: every call reads (the CLI's one-off commands). */
export const detectBackend: DetectBackend = backendDetector();

export function runnerFor(backend: Backend, warning?: string): Runner {
  // Per table the last `-S` output, kept in its save form: an unchanged table (every drift
  // check on a quiet node) gives back the same string, which the applier recognises without
  // parsing it again.
  const spec = { nat: createOutputMemo(), raw: createOutputMemo() };
  return {
    backend,
    warning,
    async restore(payload) {
      await run(`iptables-${backend}-restore`, ["--noflush", "-w", LOCK_WAIT_S], payload);
    },
    save(table, counters = false) {
      // iptables-nft-save fetches the whole ruleset whatever -t says (every table's rules,
      // pve-firewall's filter table too), `iptables-nft -t <table> -S` only that table's: at 1000
      // guests the drift check's raw read took 0.15 s of CPU for two rules, the nat read as long
      // as a save of everything. The rule lines are the same; legacy -S would take the xtables
      // lock, and -S has no save-style counters (-c), so those stay saves.
      if (backend === "nft" && !counters) {
        const memo = spec[table];
        return run("iptables-nft", ["-t", table, "-S"], undefined, memo).then((out) => {
          // Unchanged: the memo gave back what was stored, already the save form.
          if (out.startsWith("*")) return out;
          memo.stdout = specToSave(table, out);
          return memo.stdout;
        });
      }
      return run(`iptables-${backend}-save`, ["-t", table, ...(counters ? ["-c"] : [])]);
    },
  };
}

/** The `filter` table, read only (the guest firewall admission after a restore, check's
 *  diagnosis of FORWARD); pve-nat never writes it. On nf_tables `-S` of that table alone, as
 *  for the drift reads: iptables-nft-save lists the whole ruleset, and at 1000 guests the nat
 *  table made it ≈ 90 ms against ≈ 10 ms, paid by every pre-start hook of a guest whose
 *  firewall filters. */
export function saveFilter(backend: Backend): Promise<string> {
  if (backend === "nft")
    return run("iptables-nft", ["-t", "filter", "-S"]).then((out) => specToSave("filter", out));
  return run(`iptables-${backend}-save`, ["-t", "filter"]);
}

export async function createRunner(
  mode: Config["iptables"],
  detect: DetectBackend = detectBackend,
): Promise<Runner> {
  const d = await detect(mode);
  return runnerFor(d.backend, d.warning);
}
