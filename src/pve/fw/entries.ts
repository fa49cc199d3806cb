// The lines of [ALIASES] (parse_alias: `name address`) and [IPSET name] (`[!]address|alias`)
// sections. Both record where each definition stands in the trace, because pve-firewall checks
// a reference against what it has read up to that line (refs.ts).

import type { Diagnostic, FwAlias, FwFile, FwIpset, FwTrace } from "../../model.js";
import { ALIAS_REF, parseIpOrCidr } from "../address.js";
import { asciiLower } from "../macros.js";
import { cutComment, fromByteString, NS, re, S, setKey, show } from "./bytes.js";
import { COMMENT } from "./rule.js";

export type Report = (line: number, message: string, severity?: Diagnostic["severity"]) => void;

const ALIAS_LINE = re(`^(${NS}+)${S}(${NS}+)$`);
const ALIAS_COMMENT = re(`${S}*#${S}*([^\\n]*?)${S}*$`);
const IPSET_ENTRY = re(`^(!)?${S}*(${NS}+)${S}*$`);

/** One [ALIASES] line into fw.aliases (a repeated name replaces the earlier definition). */
export function parseAliasLine(
  fw: FwFile,
  trace: FwTrace,
  line: string,
  lineNo: number,
  report: Report,
): void {
  const [rest] = cutComment(line, ALIAS_COMMENT);
  const m = ALIAS_LINE.exec(rest);
  if (!m) {
    // pve-firewall drops such a line without a word (parse_alias returns nothing), so it is not
    // an error; references to the name fail where they are made.
    report(
      lineNo,
      `alias line ${show(rest)} is ignored by pve-firewall: expected 'name address' separated by exactly one space or tab`,
      "warning",
    );
    return;
  }
  const name = m[1] as string;
  const cidr = m[2] as string;
  const ip = parseIpOrCidr(cidr);
  if ("error" in ip) {
    report(lineNo, `alias ${show(name)}: ${show(cidr)} is not an IPv4/IPv6 address or CIDR`);
    return;
  }
  const alias: FwAlias = { name: fromByteString(name), cidr: fromByteString(cidr), line: lineNo };
  const key = asciiLower(fromByteString(name));
  setKey(fw.aliases, key, alias);
  trace.aliasDefs.set(key, [
    ...(trace.aliasDefs.get(key) ?? []),
    { line: lineNo, family: ip.family },
  ]);
}

/** parse_ip_or_cidr's normalisation: /32 and /128 dropped (duplicates are found on that). */
function normalizeCidr(cidr: string): string {
  const ip = parseIpOrCidr(cidr);
  if ("error" in ip) return cidr;
  return cidr.replace(ip.family === 6 ? /\/128$/ : /\/32$/, "");
}

/**
 * One [IPSET] line into `ipset`; `keys` holds the set's entries seen so far (normalised), for
 * the duplicate check. Returns the alias the entry names, as written, or null: host.fw's
 * autovivify quirk depends on it even when the entry itself is rejected.
 */
export function parseIpsetLine(
  ipset: FwIpset,
  keys: Set<string>,
  trace: FwTrace,
  line: string,
  lineNo: number,
  report: Report,
): string | null {
  const [rest] = cutComment(line, COMMENT);
  const m = IPSET_ENTRY.exec(rest);
  if (!m) {
    report(
      lineNo,
      `cannot parse ipset entry ${show(rest)}: expected one [!]address, CIDR or alias name`,
    );
    return null;
  }
  const nomatch = m[1] === "!";
  let cidr = m[2] as string;
  let err: string | null = null;
  const aliasRef = ALIAS_REF.test(cidr);
  if (aliasRef) {
    trace.ipsetAliasEntries.push({ set: ipset.name, line: lineNo, cidr: fromByteString(cidr) });
  } else {
    const ip = parseIpOrCidr(cidr);
    if ("error" in ip)
      err = `ipset entry ${show(cidr)} is not an IPv4/IPv6 address, CIDR or alias name`;
    else cidr = normalizeCidr(cidr);
  }
  if (!err && keys.has(cidr)) err = `duplicate entry ${show(cidr)} in ipset ${ipset.name}`;
  keys.add(cidr);
  if (/\/0+$/.test(cidr))
    err = `ipset entry ${show(cidr)}: a zero prefix is not allowed in ipset entries`;
  if (err) report(lineNo, err);
  else ipset.entries.push({ cidr: fromByteString(m[2] as string), nomatch, line: lineNo });
  return aliasRef ? (m[2] as string) : null;
}
