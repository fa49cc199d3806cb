// iptables as the bench uses it, inside the node namespace: saves, the floor payload (exactly the
// text the daemon restores for one guest) and the old approach's one-process-per-rule appends.
import { runOk } from "./proc.js";

export type Backend = "nft" | "legacy";

export function tool(backend: Backend, what: "" | "-save" | "-restore"): string {
  return `iptables-${backend}${what}`;
}

export function saveNat(backend: Backend): Promise<string> {
  return runOk([tool(backend, "-save"), "-t", "nat"]);
}

/** Removes every rule and user chain of nat and raw: the bench's own namespace only. */
export async function clearTables(backend: Backend): Promise<void> {
  for (const table of ["nat", "raw"]) {
    await runOk([tool(backend, ""), "-w", "-t", table, "-F"]);
    await runOk([tool(backend, ""), "-w", "-t", table, "-X"]);
  }
}

export interface GuestChains {
  dnat: string[];
  snat: string[];
}

/** Rule lines of every PVENAT-<vmid>-DNAT/SNAT chain in an `iptables-save -t nat` text. */
export function guestChains(save: string): Map<number, GuestChains> {
  const out = new Map<number, GuestChains>();
  const get = (vmid: number) => {
    let g = out.get(vmid);
    if (!g) {
      g = { dnat: [], snat: [] };
      out.set(vmid, g);
    }
    return g;
  };
  for (const line of save.split("\n")) {
    const decl = /^:PVENAT-(\d+)-(DNAT|SNAT) /.exec(line);
    if (decl) {
      get(Number(decl[1]));
      continue;
    }
    const m = /^-A PVENAT-(\d+)-(DNAT|SNAT) /.exec(line);
    if (!m) continue;
    const g = get(Number(m[1]));
    (m[2] === "DNAT" ? g.dnat : g.snat).push(line);
  }
  return out;
}

/** What the daemon's renderRestore() produces for a change to one guest whose chain set is
 *  unchanged: both chains redeclared (emptied) and refilled, nothing else. */
export function floorPayload(vmid: number, g: GuestChains): string {
  const lines = ["*nat"];
  if (g.dnat.length > 0) lines.push(`:PVENAT-${vmid}-DNAT - [0:0]`);
  if (g.snat.length > 0) lines.push(`:PVENAT-${vmid}-SNAT - [0:0]`);
  lines.push(...g.dnat, ...g.snat, "COMMIT");
  return `${lines.join("\n")}\n`;
}

/** Splits an iptables-save rule line into argv words (double quotes group, as in a shell). */
export function splitRule(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] as string));
  }
  return words;
}

/** The old approach's rules: each guest rule appended straight to the builtin chain
 *  (DNAT → PREROUTING, SNAT → POSTROUTING), one `iptables -t nat -A` argv per rule. */
export function seedArgv(backend: Backend, chains: Map<number, GuestChains>): string[][] {
  const out: string[][] = [];
  for (const g of [...chains.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1])) {
    for (const [lines, builtin] of [
      [g.dnat, "PREROUTING"],
      [g.snat, "POSTROUTING"],
    ] as const) {
      for (const line of lines) {
        const words = splitRule(line).slice(2); // drop "-A PVENAT-<vmid>-<kind>"
        out.push([tool(backend, ""), "-w", "-t", "nat", "-A", builtin, ...words]);
      }
    }
  }
  return out;
}

/** The same rules as one restore payload (to preload a table quickly). */
export function seedPayload(argvs: readonly string[][]): string {
  const quote = (w: string) => (/[\s"]/.test(w) ? `"${w.replace(/"/g, '\\"')}"` : w);
  const lines = argvs.map((a) => a.slice(4).map(quote).join(" "));
  return `*nat\n${lines.join("\n")}\nCOMMIT\n`;
}
