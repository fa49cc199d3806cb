// Checks on restore payloads shared by the iptables tests.
import { LINE_PATTERNS } from "../../src/iptables/render.js";
import type { LiveState } from "../../src/iptables/save.js";

const BUILTIN_CHAINS = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);
const TARGETS = new Set([
  "ACCEPT",
  "DROP",
  "RETURN",
  "DNAT",
  "SNAT",
  "MASQUERADE",
  "CT",
  "REJECT",
  "LOG",
]);

/** Every `-j X` in the payload names a builtin target, a builtin chain, a chain declared in the
 *  same table section, or a chain that is live and not deleted by the payload. Returns the
 *  dangling ones (empty = fine). Also every `-A C` / `-X C` chain must be declared or live. */
export function danglingTargets(payload: string, live?: LiveState): string[] {
  const bad: string[] = [];
  let declared = new Set<string>();
  let deleted = new Set<string>();
  const sections: string[][] = [];
  let cur: string[] = [];
  for (const line of payload.split("\n")) {
    if (line.startsWith("*")) cur = [];
    cur.push(line);
    if (line === "COMMIT") sections.push(cur);
  }
  for (const section of sections) {
    declared = new Set(
      section.filter((l) => l.startsWith(":")).map((l) => l.slice(1).split(" ")[0] as string),
    );
    deleted = new Set(section.filter((l) => l.startsWith("-X ")).map((l) => l.slice(3)));
    const exists = (c: string) =>
      BUILTIN_CHAINS.has(c) || declared.has(c) || (live?.chains.has(c) === true && !deleted.has(c));
    for (const line of section) {
      const j = / -j (\S+)/.exec(line);
      if (j && !TARGETS.has(j[1] as string) && !exists(j[1] as string)) bad.push(line);
      const a = /^-[AID] (\S+)/.exec(line);
      if (a && !exists(a[1] as string)) bad.push(line);
      const x = /^-X (\S+)/.exec(line);
      if (x && !declared.has(x[1] as string) && !live?.chains.has(x[1] as string)) bad.push(line);
    }
    // A chain deleted must not be jumped to by any line kept or added in this section.
    for (const line of section) {
      const j = / -j (\S+)/.exec(line);
      if (j && deleted.has(j[1] as string) && !line.startsWith("-D ")) bad.push(line);
    }
  }
  return bad;
}

/** Lines not matching the renderer's whitelist (empty = fine). */
export function offWhitelist(payload: string): string[] {
  return payload
    .split("\n")
    .filter((l) => l !== "")
    .filter((l) => !LINE_PATTERNS.some((p) => p.test(l)));
}
