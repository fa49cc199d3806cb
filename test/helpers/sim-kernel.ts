// A tiny simulated netfilter for the applier's unit tests: interprets `iptables-restore
// --noflush` payloads (declare/flush, -A, -I, -D, -X, COMMIT) atomically per call, checks jump
// targets and deletions the way the kernel would refuse them, and prints `iptables-save` text.
import { CommandError } from "../../src/errors.js";
import { inputText } from "../../src/input.js";
import type { Runner } from "../../src/iptables/runner.js";

type Table = "nat" | "raw";
type Tables = Record<Table, Map<string, string[]>>;

const BUILTINS: Record<Table, string[]> = {
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  raw: ["PREROUTING", "OUTPUT"],
};
const TARGETS = new Set([
  "ACCEPT",
  "DROP",
  "RETURN",
  "DNAT",
  "SNAT",
  "MASQUERADE",
  "CT",
  "REDIRECT",
  "LOG",
  "NOTRACK",
]);

export interface SimKernel extends Runner {
  tables: Tables;
  payloads: string[];
  saves: number;
  /** Next restore throws (after recording the payload) and changes nothing. */
  failNext: boolean;
  /** When set, restore waits for this before applying (to observe ordering). */
  gate: Promise<void> | null;
  /** Restores running right now (serialization check) and the most ever seen at once. */
  inFlight: number;
  maxInFlight: number;
  /** Per rule line counters for `save(t, true)`: key = rule line. */
  counters: Map<string, [number, number]>;
  /** Direct edit, like someone running iptables by hand. */
  edit(table: Table, fn: (chains: Map<string, string[]>) => void): void;
}

function clone(t: Tables): Tables {
  const c = (m: Map<string, string[]>) => new Map([...m].map(([k, v]) => [k, [...v]]));
  return { nat: c(t.nat), raw: c(t.raw) };
}

function emptyTables(): Tables {
  const mk = (t: Table) => new Map(BUILTINS[t].map((b) => [b, [] as string[]]));
  return { nat: mk("nat"), raw: mk("raw") };
}

/** Loads `iptables-save` text (foreign rules) into the tables. */
function load(tables: Tables, table: Table, text: string): void {
  for (const line of text.split("\n")) {
    const decl = /^:(\S+) /.exec(line);
    if (decl && !tables[table].has(decl[1] as string)) tables[table].set(decl[1] as string, []);
    const app = /^-A (\S+) /.exec(line);
    if (app) tables[table].get(app[1] as string)?.push(line);
  }
}

function fail(msg: string): never {
  throw new CommandError(`iptables-restore failed: ${msg}`, "iptables-restore", 1, msg);
}

function apply(tables: Tables, payload: string): void {
  let table: Table | null = null;
  for (const [i, line] of payload.split("\n").entries()) {
    const n = i + 1;
    if (line === "") continue;
    if (line.startsWith("*")) {
      table = line.slice(1) as Table;
      if (table !== "nat" && table !== "raw") fail(`line ${n}: unknown table`);
      continue;
    }
    if (table === null) fail(`line ${n}: no table`);
    const chains = tables[table];
    if (line === "COMMIT") {
      for (const [name, rules] of chains) {
        for (const r of rules) {
          const j = / -j (\S+)/.exec(r)?.[1];
          if (j && !TARGETS.has(j) && !chains.has(j)) fail(`COMMIT: ${name} jumps to missing ${j}`);
        }
      }
      table = null;
      continue;
    }
    let m = /^:(\S+) (\S+) \[\d+:\d+\]$/.exec(line);
    if (m) {
      const name = m[1] as string;
      if (!BUILTINS[table].includes(name)) chains.set(name, []);
      continue;
    }
    m = /^-A (\S+) (.*)$/.exec(line);
    if (m) {
      const rules = chains.get(m[1] as string) ?? fail(`line ${n}: no chain ${m[1]}`);
      rules.push(line);
      continue;
    }
    m = /^-I (\S+) 1 (.*)$/.exec(line);
    if (m) {
      const rules = chains.get(m[1] as string) ?? fail(`line ${n}: no chain ${m[1]}`);
      rules.unshift(`-A ${m[1]} ${m[2]}`);
      continue;
    }
    m = /^-D (\S+) (.*)$/.exec(line);
    if (m) {
      const rules = chains.get(m[1] as string) ?? fail(`line ${n}: no chain ${m[1]}`);
      const at = rules.indexOf(`-A ${m[1]} ${m[2]}`);
      if (at < 0) fail(`line ${n}: rule to delete not found`);
      rules.splice(at, 1);
      continue;
    }
    m = /^-X (\S+)$/.exec(line);
    if (m) {
      const name = m[1] as string;
      const rules = chains.get(name) ?? fail(`line ${n}: no chain ${name}`);
      if (rules.length > 0) fail(`line ${n}: chain ${name} not empty`);
      for (const [other, rs] of chains) {
        if (rs.some((r) => r.endsWith(` -j ${name}`)))
          fail(`line ${n}: ${name} referenced by ${other}`);
      }
      chains.delete(name);
      continue;
    }
    fail(`line ${n}: cannot parse ${JSON.stringify(line)}`);
  }
  if (table !== null) fail("no COMMIT");
}

export function simKernel(initial: { nat?: string; raw?: string } = {}): SimKernel {
  const tables = emptyTables();
  load(tables, "nat", initial.nat ?? "");
  load(tables, "raw", initial.raw ?? "");
  const k: SimKernel = {
    backend: "nft",
    tables,
    payloads: [],
    saves: 0,
    failNext: false,
    gate: null,
    inFlight: 0,
    maxInFlight: 0,
    counters: new Map(),
    async restore(input) {
      const payload = inputText(input);
      k.payloads.push(payload);
      k.inFlight++;
      k.maxInFlight = Math.max(k.maxInFlight, k.inFlight);
      try {
        if (k.gate) await k.gate;
        await new Promise((r) => setImmediate(r));
        if (k.failNext) {
          k.failNext = false;
          fail("line 3 failed (simulated)");
        }
        const next = clone(k.tables);
        apply(next, payload);
        k.tables.nat = next.nat;
        k.tables.raw = next.raw;
      } finally {
        k.inFlight--;
      }
    },
    async save(table, counters = false) {
      k.saves++;
      const out = [`*${table}`];
      for (const [name, _] of k.tables[table]) {
        out.push(BUILTINS[table].includes(name) ? `:${name} ACCEPT [0:0]` : `:${name} - [0:0]`);
      }
      for (const rules of k.tables[table].values()) {
        for (const r of rules) {
          const c = k.counters.get(r) ?? [0, 0];
          out.push(counters ? `[${c[0]}:${c[1]}] ${r}` : r);
        }
      }
      out.push("COMMIT", "");
      return out.join("\n");
    },
    edit(table, fn) {
      fn(k.tables[table]);
    },
  };
  return k;
}
