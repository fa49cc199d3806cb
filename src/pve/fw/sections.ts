// Section headers: which ones each file kind has, what a header line opens, and why a line that
// looks like a header is not taken as one. pve-firewall only recognises the headers a file kind
// allows; any other header-looking line is just a line outside any section. host.fw has one
// quirk (autovivify below): the set of allowed sections can grow while the file is read.

import type { FwFile, FwKind } from "../../model.js";
import { ALIAS_REF, IPSET_REF, NAME_PATTERN } from "../address.js";
import { asciiLower } from "../macros.js";
import { encodingHint, NS, re, S, show, truthy } from "./bytes.js";
import type { RawRule } from "./rule.js";

export type SectionKind = "options" | "aliases" | "rules" | "group" | "ipset";

/** The sections each kind of file has (pve-firewall's parsers for that file). */
export const ALLOWED: Record<FwKind, ReadonlySet<SectionKind>> = {
  cluster: new Set(["options", "aliases", "rules", "group", "ipset"]),
  host: new Set(["options", "rules"]),
  guest: new Set(["options", "aliases", "rules", "ipset"]),
};

const PLAIN_HEADERS = {
  options: /^\[options\]$/i,
  aliases: /^\[aliases\]$/i,
  rules: /^\[rules\]$/i,
} as const;

const NAME_RE = re(`^${NAME_PATTERN}$`);
/** `[group name]` and `[ipset name]`, each with an optional comment; limits as pve-firewall's. */
const NAMED_HEADERS = [
  {
    kind: "group",
    what: "security group",
    max: 18,
    pattern: re(`^\\[group${S}+(${NS}+)\\]${S}*(?:#${S}*([^\\n]*?)${S}*)?$`, "i"),
  },
  {
    kind: "ipset",
    what: "ipset",
    max: 64,
    pattern: re(`^\\[ipset${S}+(${NS}+)\\]${S}*(?:#${S}*([^\\n]*?)${S}*)?$`, "i"),
  },
] as const;

export type Header =
  | { kind: "options" | "aliases" | "rules" }
  | { kind: "group" | "ipset"; name: string }
  | { error: string };

/**
 * The section a header line opens, or why pve-firewall ignores the section it names; null when
 * the line is no header this file allows. The header shapes cannot overlap, so the order in
 * which they are tried does not matter.
 */
export function sectionHeader(line: string, allowed: ReadonlySet<SectionKind>): Header | null {
  for (const kind of ["options", "aliases", "rules"] as const) {
    if (allowed.has(kind) && PLAIN_HEADERS[kind].test(line)) return { kind };
  }
  for (const { kind, what, max, pattern } of NAMED_HEADERS) {
    const m = allowed.has(kind) ? pattern.exec(line) : null;
    if (!m) continue;
    // Names are stored lower-cased; the checks apply to that form.
    const name = asciiLower(m[1] as string);
    if (name.length > max) return { error: `${what} name ${show(name)} is too long (max ${max})` };
    if (!NAME_RE.test(name)) {
      return {
        error: `invalid ${what} name ${show(name)} (expected a letter, then letters, digits, - or _)`,
      };
    }
    return { kind, name };
  }
  return null;
}

/** What to add to "line outside any section" when the line was probably meant as a header. */
export function outsideHint(line: string, kind: FwKind): string {
  return encodingHint(line) ?? (/^\[/.test(line) ? headerHint(line, kind) : "");
}

/** Why a `[name…` line did not open a section: not allowed in this kind, or extra text. */
export function headerHint(line: string, kind: FwKind): string {
  const m = /^\[([A-Za-z]+)/.exec(line);
  if (!m) return "";
  const name = asciiLower(m[1] as string);
  if (
    ["options", "aliases", "rules", "group", "ipset"].includes(name) &&
    !ALLOWED[kind].has(name as SectionKind)
  ) {
    return ` ([${name.toUpperCase()}] sections are not allowed in ${kind === "guest" ? "a guest file" : `${kind}.fw`})`;
  }
  if (["options", "aliases", "rules"].includes(name) && !/^\[[A-Za-z]+\]$/.test(line)) {
    return ` (a [${name.toUpperCase()}] header cannot carry anything else on its line)`;
  }
  return "";
}

/**
 * verify_rule looks names up in the host file's own (absent) alias and ipset tables, which makes
 * Perl create them; from then on the parser recognises [ALIASES] and [IPSET] headers in host.fw.
 */
export function hostAutovivify(
  rule: RawRule,
  cluster: FwFile | null,
  allowed: Set<SectionKind>,
): void {
  for (const value of [rule.source, rule.dest]) {
    if (!truthy(value)) continue;
    if (value.startsWith("+")) {
      const m = IPSET_REF.exec(value);
      if (m && !(cluster && Object.hasOwn(cluster.ipsets, m[2] as string))) allowed.add("ipset");
      continue;
    }
    const m = ALIAS_REF.exec(value);
    if (!m) continue;
    const inCluster =
      cluster !== null && Object.hasOwn(cluster.aliases, asciiLower(m[2] as string));
    if (!inCluster || m[1] !== "dc/") allowed.add("aliases");
  }
}

/** resolve_alias on an ipset entry that names an alias (not dc/) creates host.fw's alias table.
 *  `entryAlias`: the alias reference the entry holds, as written, or null. */
export function hostIpsetAutovivify(entryAlias: string | null, allowed: Set<SectionKind>): void {
  const m = entryAlias === null ? null : ALIAS_REF.exec(entryAlias);
  if (m && m[1] !== "dc/") allowed.add("aliases");
}
