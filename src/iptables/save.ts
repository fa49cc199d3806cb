import { ENTRY_CHAINS, isOwnedChain } from "./chains.js";

// What pve-nat owns in the live tables, read from `iptables-save -t nat` / `-t raw` (with or
// without -c). Foreign chains and rules are only looked at to find our builtin jumps.

export interface LiveState {
  /** Owned chains present, with their rule lines as iptables-save prints them (without counters). */
  chains: Map<string, string[]>;
  /** Jumps from builtin chains to our entry chains, e.g. {table:"nat", chain:"PREROUTING", …}.
   *  Only exact `-A <builtin> -j <entry>` lines count; one element per (table, chain, target) found. */
  jumps: Array<{
    table: "nat" | "raw";
    chain: string;
    target: string;
    count: number;
    atTop: boolean;
  }>;
  /** Counters per owned rule line, when saved with -c. key: `${chain} ${ruleLine}` */
  counters: Map<string, { packets: number; bytes: number }>;
}

/** The builtin → entry jumps pve-nat keeps, in the order it renders them. */
export const BUILTIN_JUMPS: ReadonlyArray<{ table: "nat" | "raw"; chain: string; target: string }> =
  [
    { table: "nat", chain: "PREROUTING", target: ENTRY_CHAINS.prerouting },
    { table: "nat", chain: "OUTPUT", target: ENTRY_CHAINS.output },
    { table: "nat", chain: "POSTROUTING", target: ENTRY_CHAINS.postrouting },
    { table: "raw", chain: "PREROUTING", target: ENTRY_CHAINS.raw },
  ];

const COUNTERS = /^\[(\d+):(\d+)\] (.*)$/;
const DECLARE = /^:(\S+) /;
const APPEND = /^-A (\S+) /;

/** `iptables -t <table> -S` output as `iptables-save -t <table>` prints it (without counters):
 *  `-P CHAIN POLICY` → `:CHAIN POLICY [0:0]`, `-N CHAIN` → `:CHAIN - [0:0]`; rule lines are
 *  printed by the same code in both and pass unchanged. */
export function specToSave(table: "nat" | "raw" | "filter", text: string): string {
  // -S prints the policies and chains before the rules: only that head is rewritten, the rules
  // (nearly all of the text) are passed on as one piece.
  const at = text.startsWith("-A ") ? 0 : text.indexOf("\n-A ") + 1 || text.length;
  let head = text.slice(0, at).split("\n");
  let body = text.slice(at);
  const declares = (l: string) => l.startsWith("-P ") || l.startsWith("-N ");
  if (body.includes("\n-P ") || body.includes("\n-N ")) {
    // Not the order iptables prints: declarations first all the same.
    const lines = text.split("\n").filter((l) => l !== "");
    head = lines.filter(declares);
    body = lines
      .filter((l) => !declares(l))
      .map((l) => `${l}\n`)
      .join("");
  }
  let out = `*${table}\n`;
  for (const line of head) {
    if (line.startsWith("-P ")) {
      const [, chain, policy] = line.split(" ");
      out += `:${chain} ${policy} [0:0]\n`;
    } else if (line.startsWith("-N ")) out += `:${line.slice(3)} - [0:0]\n`;
  }
  if (body !== "" && !body.endsWith("\n")) body += "\n";
  return `${out}${body}COMMIT\n`;
}

/** Whether two saves of one table (without -c) hold the same chains and rules, so parseSave
 *  would give the same state: the comment lines around the table (time stamps) and the
 *  builtin chains' counters may differ. Anything else that differs, or an unexpected shape,
 *  counts as different (the caller then parses). */
export function sameSave(a: string, b: string): boolean {
  if (a === b) return true;
  let i = tableStart(a);
  let j = tableStart(b);
  if (i < 0 || j < 0) return false;
  // The `*table` line, then its chain declarations: the name and policy must match.
  const ei = lineEnd(a, i);
  const ej = lineEnd(b, j);
  if (a.slice(i, ei) !== b.slice(j, ej)) return false;
  i = ei + 1;
  j = ej + 1;
  while (a.charCodeAt(i) === 58 /* : */ && b.charCodeAt(j) === 58) {
    const ei = lineEnd(a, i);
    const ej = lineEnd(b, j);
    if (declaration(a, i, ei) !== declaration(b, j, ej)) return false;
    i = ei + 1;
    j = ej + 1;
  }
  // The rules up to the last COMMIT, after which only comment lines may follow.
  const ea = tableEnd(a);
  const eb = tableEnd(b);
  if (ea < i - 1 || eb < j - 1) return false;
  return a.slice(i, ea) === b.slice(j, eb);
}

/** Offset after the table's last `COMMIT`, -1 when there is none or more than comments
 *  follow it. */
function tableEnd(t: string): number {
  const c = t.lastIndexOf("\nCOMMIT");
  if (c < 0) return -1;
  const end = c + "\nCOMMIT".length;
  const rest = t.slice(end).split("\n");
  return rest.every((l) => l === "" || l.startsWith("#")) ? end : -1;
}

/** Offset of the `*table` line: after the leading comment lines, -1 when there is none. */
function tableStart(t: string): number {
  let i = 0;
  while (t.charCodeAt(i) === 35 /* # */) {
    i = t.indexOf("\n", i) + 1;
    if (i === 0) return -1;
  }
  return t.charCodeAt(i) === 42 /* * */ ? i : -1;
}

function lineEnd(t: string, i: number): number {
  const n = t.indexOf("\n", i);
  return n < 0 ? t.length : n;
}

/** `:NAME POLICY` of a declaration line `:NAME POLICY [packets:bytes]`. */
function declaration(t: string, i: number, end: number): string {
  const c = t.lastIndexOf(" [", end);
  return t.slice(i, c > i ? c : end);
}

export function emptyLive(): LiveState {
  return { chains: new Map(), jumps: [], counters: new Map() };
}

export function parseSave(nat: string, raw: string): LiveState {
  const live = emptyLive();
  parseTable(nat, "nat", live);
  parseTable(raw, "raw", live);
  return live;
}

function parseTable(text: string, table: "nat" | "raw", live: LiveState): void {
  const header = `*${table}`;
  let inTable = false;
  const firstRule = new Set<string>(); // builtin chains whose first rule was seen
  // iptables-save prints a chain's rules together: the chain is looked up once per run of
  // them, not per rule (10 000 rules at 1000 guests, parsed on every drift check that sees a
  // change, cold each time).
  let runChain = "";
  let runLines: string[] | null = null; // the run's owned chain's lines; null: not owned
  for (let start = 0; start <= text.length; ) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end).trimEnd();
    start = end + 1;
    const first = line.charCodeAt(0);
    if (first === 42 /* * */) {
      inTable = line === header;
      runChain = "";
      continue;
    }
    if (!inTable) continue;
    if (first === 58 /* : */) {
      const decl = DECLARE.exec(line);
      if (decl) {
        const name = decl[1] as string;
        if (isOwnedChain(name) && !live.chains.has(name)) live.chains.set(name, []);
      }
      continue;
    }
    let rule = line;
    let counter: { packets: number; bytes: number } | null = null;
    if (first === 91 /* [ */) {
      const c = COUNTERS.exec(line);
      if (c) {
        counter = { packets: Number(c[1]), bytes: Number(c[2]) };
        rule = c[3] as string;
      }
    }
    if (!rule.startsWith("-A ")) continue;
    let chain = runChain;
    if (
      chain === "" ||
      !rule.startsWith(chain, 3) ||
      rule.charCodeAt(3 + chain.length) !== 32 /* space */
    ) {
      const app = APPEND.exec(rule);
      if (!app) continue;
      chain = app[1] as string;
      runChain = chain;
      runLines = null;
      if (isOwnedChain(chain)) {
        runLines = live.chains.get(chain) ?? [];
        live.chains.set(chain, runLines);
      }
    }
    if (runLines !== null) {
      runLines.push(rule);
      if (counter) live.counters.set(`${chain} ${rule}`, counter);
      continue;
    }
    const atTop = !firstRule.has(chain);
    firstRule.add(chain);
    const jump = BUILTIN_JUMPS.find(
      (j) => j.table === table && j.chain === chain && rule === `-A ${chain} -j ${j.target}`,
    );
    if (!jump) continue;
    const seen = live.jumps.find(
      (j) => j.table === table && j.chain === chain && j.target === jump.target,
    );
    if (seen) seen.count++;
    else live.jumps.push({ table, chain, target: jump.target, count: 1, atTop });
  }
}
