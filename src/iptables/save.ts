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
export function specToSave(table: "nat" | "raw", text: string): string {
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
  let inTable = false;
  const firstRule = new Set<string>(); // builtin chains whose first rule was seen
  for (const rawLine of text.split("\n")) {
    const line = rawLine.trimEnd();
    if (line.startsWith("*")) {
      inTable = line === `*${table}`;
      continue;
    }
    if (!inTable || line === "" || line.startsWith("#") || line === "COMMIT") continue;
    const decl = DECLARE.exec(line);
    if (decl) {
      const name = decl[1] as string;
      if (isOwnedChain(name) && !live.chains.has(name)) live.chains.set(name, []);
      continue;
    }
    let rule = line;
    let counter: { packets: number; bytes: number } | null = null;
    const c = COUNTERS.exec(line);
    if (c) {
      counter = { packets: Number(c[1]), bytes: Number(c[2]) };
      rule = c[3] as string;
    }
    const app = APPEND.exec(rule);
    if (!app) continue;
    const chain = app[1] as string;
    if (isOwnedChain(chain)) {
      const lines = live.chains.get(chain) ?? [];
      lines.push(rule);
      live.chains.set(chain, lines);
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
