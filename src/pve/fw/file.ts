// A whole firewall file (cluster.fw, host.fw, <vmid>.fw) read the way pve-firewall's
// generic_fw_config_parser reads it: line by line, each line judged by the section it is in.
// Whatever pve-firewall warns about or drops becomes a diagnostic at that line; whatever it
// accepts yields none. The line grammars live beside this file (rule.ts, options.ts,
// entries.ts, sections.ts); checks that need another file are in ../refs.ts.

import type { FwFile, FwGroup, FwIpset, FwKind, FwTrace } from "../../model.js";
import { findMacro } from "../macros.js";
import { contentLines, fromByteString, setKey, show, toByteString, truthy } from "./bytes.js";
import { parseAliasLine, parseIpsetLine, type Report } from "./entries.js";
import { isDeferred } from "./macro.js";
import { parseOption } from "./options.js";
import { type RuleEnv, splitRule, toRule, verifyRule } from "./rule.js";
import {
  ALLOWED,
  type Header,
  headerHint,
  hostAutovivify,
  hostIpsetAutovivify,
  outsideHint,
  type SectionKind,
  sectionHeader,
} from "./sections.js";

type Section =
  | { kind: "options" }
  | { kind: "aliases" }
  | { kind: "rules" }
  | { kind: "group"; group: FwGroup }
  | { kind: "ipset"; ipset: FwIpset; keys: Set<string> };

/** verify_rule's rule_env for the [RULES] of each file kind ([group] sections: "group"). */
const ENV: Record<FwKind, RuleEnv> = { guest: "vm", host: "host", cluster: "cluster" };

/** One file's parse in progress. `allowed` can grow while reading host.fw (sections.ts). */
interface Reader {
  fw: FwFile;
  trace: FwTrace;
  cluster: FwFile | null;
  allowed: Set<SectionKind>;
  report: Report;
}

/**
 * Parses one firewall file. Never throws: every problem is a diagnostic at its line.
 * `cluster` (optional, for host.fw) settles one quirk: pve-firewall starts accepting [ALIASES]
 * and [IPSET] sections in host.fw after a rule there looked up an alias or ipset that cluster.fw
 * does not have (Perl autovivification); without it such lookups are assumed to miss.
 */
export function parseFwFile(
  text: string | Uint8Array,
  file: string,
  kind: FwKind,
  cluster: FwFile | null = null,
): FwFile {
  const trace: FwTrace = {
    aliasDefs: new Map(),
    ipsetDefs: new Map(),
    ipsetAliasEntries: [],
    groupRules: [],
    deferredMacros: new Map(),
  };
  const fw: FwFile = {
    file,
    kind,
    options: {},
    rules: [],
    aliases: {},
    ipsets: {},
    groups: {},
    diagnostics: [],
    trace,
  };
  const reader: Reader = {
    fw,
    trace,
    cluster,
    allowed: new Set(ALLOWED[kind]),
    report: (line, message, severity = "error") => {
      fw.diagnostics.push({ file, line, severity, message });
    },
  };
  try {
    read(reader, toByteString(text));
  } catch (err) {
    // A bug here must not take the daemon down; report it against the file as a whole.
    fw.diagnostics.push({
      file,
      line: 0,
      severity: "error",
      message: `internal parser error: ${String(err)}`,
    });
  }
  return fw;
}

function read(r: Reader, raw: string): void {
  const { fw, trace, report } = r;
  let section: Section | null = null;
  for (const { lineNo, line } of contentLines(raw)) {
    const header = sectionHeader(line, r.allowed);
    if (header !== null) {
      section = open(r, header, lineNo);
      continue;
    }
    if (!section) {
      report(lineNo, `line outside any section: ${show(line)}${outsideHint(line, fw.kind)}`);
      continue;
    }
    switch (section.kind) {
      case "options": {
        const o = parseOption(line, fw.kind);
        if ("error" in o) report(lineNo, o.error);
        else setKey(fw.options, o.key, o.value);
        break;
      }
      case "aliases":
        parseAliasLine(fw, trace, line, lineNo, report);
        break;
      case "rules":
      case "group":
        ruleLine(r, section, line, lineNo);
        break;
      case "ipset": {
        const alias = parseIpsetLine(section.ipset, section.keys, trace, line, lineNo, report);
        if (fw.kind === "host") hostIpsetAutovivify(alias, r.allowed);
        break;
      }
    }
  }
}

/** The section a header opens (null: a bad name, whose lines pve-firewall then ignores). A
 *  repeated [group x] / [IPSET x] header replaces the earlier section in the tables. */
function open(r: Reader, header: Header, lineNo: number): Section | null {
  const { fw, trace } = r;
  if ("error" in header) {
    r.report(lineNo, `${header.error}; the lines up to the next section header are ignored`);
    return null;
  }
  if (header.kind === "group") {
    const group: FwGroup = { name: header.name, line: lineNo, rules: [] };
    setKey(fw.groups, header.name, group);
    return { kind: "group", group };
  }
  if (header.kind === "ipset") {
    const ipset: FwIpset = { name: header.name, line: lineNo, entries: [] };
    setKey(fw.ipsets, header.name, ipset);
    trace.ipsetDefs.set(header.name, [...(trace.ipsetDefs.get(header.name) ?? []), lineNo]);
    return { kind: "ipset", ipset, keys: new Set() };
  }
  return { kind: header.kind };
}

/** A line of [RULES] or of a [group] section: split, verified, then kept or reported. */
function ruleLine(
  r: Reader,
  section: Extract<Section, { kind: "rules" | "group" }>,
  line: string,
  lineNo: number,
): void {
  const { fw, trace, report } = r;
  const raw = splitRule(line);
  if ("error" in raw) {
    report(lineNo, `${raw.error}${section.kind === "rules" ? headerHint(line, fw.kind) : ""}`);
    return;
  }
  if (fw.kind === "host" && section.kind === "rules") hostAutovivify(raw, r.cluster, r.allowed);
  const errors = verifyRule(raw, section.kind === "group" ? "group" : ENV[fw.kind]);
  if (errors.length === 0 && isDeferred(raw)) {
    const dec = (v: string | undefined) => (v === undefined ? null : fromByteString(v));
    trace.deferredMacros.set(lineNo, {
      proto: dec(raw.proto),
      dport: dec(raw.dport),
      sport: dec(raw.sport),
    });
  }
  if (raw.type === "group" && raw.enable && errors.length === 0 && /[A-Z]/.test(raw.action)) {
    // Group names are stored lower-cased and looked up as written.
    errors.push(`security group ${show(raw.action)} is never found: write it in lower case`);
  }
  if (errors.length > 0) {
    report(lineNo, errors.join("; "));
    return;
  }
  const macro = truthy(raw.macro) ? (findMacro(raw.macro)?.name ?? null) : null;
  const rule = toRule(raw, fw.file, lineNo, macro);
  if (section.kind === "group") {
    section.group.rules.push(rule);
    trace.groupRules.push(rule);
  } else {
    fw.rules.push(rule);
  }
}
