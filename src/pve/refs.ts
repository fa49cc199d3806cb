// References between firewall files, judged as pve-firewall does:
// - when it parses a file (verify_rule, ipset entries): an alias / ipset must exist in the cluster
//   file or in the file itself (scope ignored), and a definition in the same file only counts if
//   it comes earlier (pve-firewall checks each line against what it has read so far);
// - when it compiles enabled rules (generate_group_rules): security groups must exist in
//   cluster.fw (an error, as the recorded pve-firewall verdicts have it);
// - also when compiling (ipt_gen_src_or_dst_match), the scope decides where to look (`dc/`
//   cluster.fw only, `guest/` the guest file only, none: guest file then cluster.fw; rules in
//   cluster.fw, host.fw and security groups have no guest file). pve-firewall then warns and
//   skips the rule; the recorded verdicts do not cover this, so it is a warning here.
// Aliases' IP families must not mix within one rule (verify_rule dies on it).
// pve-firewall also knows SDN ipsets (+sdn/name, generated from SDN vnets) that pve-nat does not
// read: those references are not checked.

import type { Diagnostic, FwAlias, FwFile, FwIpset, FwRule } from "../model.js";
import { ALIAS_REF, IPSET_REF, parseAddressRef, parseIpOrCidr } from "./address.js";
import { macroConflicts } from "./fw/macro.js";
import { asciiLower } from "./macros.js";

/** Names SDN gives its generated ipsets (vnet subnets, IPAM). */
const SDN_IPSET = /-(?:all|gateway|no-gateway|dhcp)$|^guest-ipam-/;

interface Scope {
  /** The file the reference is in. */
  self: FwFile;
  line: number;
  /** pve-firewall's fw_conf while parsing: the file itself, or null in a security group. */
  local: FwFile | null;
  /** fw_conf when compiling: only a guest file has aliases / ipsets of its own there. */
  compileLocal: FwFile | null;
  cluster: FwFile | null;
}

/** What an alias lookup finds: enough to tell that it exists and which family it fixes. */
interface AliasHit {
  family: 4 | 6 | null;
}

function familyOf(a: FwAlias): 4 | 6 | null {
  const r = parseIpOrCidr(a.cidr);
  return "family" in r ? r.family : null;
}

/**
 * The alias `name` of `owner` as pve-firewall sees it at the reference: in the referencing file
 * only definitions above it count (the last of them); elsewhere, and when `final` (compile
 * time), the file's last definition.
 */
function alias(
  scope: Scope,
  owner: FwFile | null,
  name: string,
  final = false,
): AliasHit | undefined {
  if (!owner) return undefined;
  const defs = owner.trace?.aliasDefs.get(name);
  if (!final && owner === scope.self && defs) {
    const above = defs.filter((d) => d.line < scope.line);
    const last = above[above.length - 1];
    return last ? { family: last.family } : undefined;
  }
  if (!Object.hasOwn(owner.aliases, name)) return undefined;
  const def = owner.aliases[name] as FwAlias;
  if (!final && owner === scope.self && def.line >= scope.line) return undefined;
  return { family: familyOf(def) };
}

function ipset(scope: Scope, owner: FwFile | null, name: string, final = false): boolean {
  if (!owner) return false;
  const headers = owner.trace?.ipsetDefs.get(name);
  if (!final && owner === scope.self && headers) return headers.some((l) => l < scope.line);
  if (!Object.hasOwn(owner.ipsets, name)) return false;
  return final || owner !== scope.self || (owner.ipsets[name] as FwIpset).line < scope.line;
}

interface Found {
  errors: string[];
  warnings: string[];
}

/** Problems with one -source/-dest value; `families` collects the IP families it fixes. */
function checkAddress(
  value: string,
  flag: string,
  scope: Scope,
  enabled: boolean,
  families: Array<{ family: 4 | 6; alias: boolean }>,
  found: Found,
): void {
  const { errors, warnings } = found;
  const { local, compileLocal, cluster } = scope;
  const ipsetRef = IPSET_REF.exec(value);
  if (ipsetRef) {
    const scopeName = ipsetRef[1] ?? "";
    const name = ipsetRef[2] as string;
    if (scopeName === "sdn/" || (scopeName === "" && SDN_IPSET.test(name))) return;
    const lower = asciiLower(name);
    const hint = lower !== name ? ` (ipset names are matched as written: use ${lower})` : "";
    if (!ipset(scope, cluster, name) && !ipset(scope, local, name)) {
      errors.push(`${flag}: no such ipset '${name}'${hint}`);
    } else if (enabled) {
      const inLocal = scopeName !== "dc/" && ipset(scope, compileLocal, name, true);
      const inCluster = scopeName !== "guest/" && ipset(scope, cluster, name, true);
      if (!inLocal && !inCluster) {
        warnings.push(
          `${flag}: no ipset '${name}' in ${where(scopeName, compileLocal)}; pve-firewall skips this rule`,
        );
      }
    }
    return;
  }
  const aliasRef = ALIAS_REF.exec(value);
  if (aliasRef) {
    const scopeName = aliasRef[1] ?? "";
    const name = asciiLower(aliasRef[2] as string);
    if (!alias(scope, cluster, name) && !alias(scope, local, name)) {
      errors.push(`${flag}: no such alias '${value}'`);
      return;
    }
    // The family pve-firewall uses while verifying (what it has read so far, scoped).
    let e = scopeName !== "dc/" ? alias(scope, local, name) : undefined;
    if (!e && scopeName !== "guest/") e = alias(scope, cluster, name);
    const f = e?.family ?? null;
    if (f !== null) families.push({ family: f, alias: true });
    if (enabled) {
      let final = scopeName !== "dc/" ? alias(scope, compileLocal, name, true) : undefined;
      if (!final && scopeName !== "guest/") final = alias(scope, cluster, name, true);
      if (!final) {
        warnings.push(
          `${flag}: no alias '${value}' in ${where(scopeName, compileLocal)}; pve-firewall skips this rule`,
        );
      }
    }
    return;
  }
  const list = parseAddressRef(value);
  if ("kind" in list && list.kind === "list" && list.items[0]) {
    families.push({ family: list.items[0].family, alias: false });
  }
}

function where(scopeName: string, local: FwFile | null): string {
  if (scopeName === "dc/") return "cluster.fw";
  if (scopeName === "guest/") {
    return local?.kind === "guest" ? local.file : "a guest file (this rule is not in one)";
  }
  return local?.kind === "guest" ? `${local.file} or cluster.fw` : "cluster.fw";
}

function checkRule(rule: FwRule, scope: Scope): Found {
  const found: Found = { errors: [], warnings: [] };
  const { errors } = found;
  const families: Array<{ family: 4 | 6; alias: boolean }> = [];
  if (rule.proto === "icmp") families.push({ family: 4, alias: false });
  if (rule.proto === "icmpv6" || rule.proto === "ipv6-icmp")
    families.push({ family: 6, alias: false });
  if (rule.source) checkAddress(rule.source, "-source", scope, rule.enabled, families, found);
  if (rule.dest) checkAddress(rule.dest, "-dest", scope, rule.enabled, families, found);
  const first = families[0];
  const mixed = first !== undefined && families.some((f) => f.family !== first.family);
  if (mixed && families.some((f) => f.alias)) {
    errors.push("IPv4 and IPv6 mixed in one rule (through an alias)");
  }
  // The macro check parseFwFile left for us: its IPv4/IPv6 variant depends on an alias.
  const deferred = scope.self.trace?.deferredMacros.get(rule.line);
  if (deferred && rule.macro && !mixed && errors.length === 0) {
    errors.push(...macroConflicts(rule.macro, deferred, first?.family ?? null));
  }
  if (rule.type === "group" && rule.enabled) {
    const groups = scope.cluster?.groups ?? {};
    if (!Object.hasOwn(groups, rule.action)) {
      errors.push(`no such security group '${rule.action}' (groups are defined in cluster.fw)`);
    }
  }
  return found;
}

function checkIpsetEntries(fw: FwFile, cluster: FwFile | null): Diagnostic[] {
  const out: Diagnostic[] = [];
  const entries =
    fw.trace?.ipsetAliasEntries ??
    Object.values(fw.ipsets).flatMap((set) =>
      set.entries.map((e) => ({ set: set.name, line: e.line, cidr: e.cidr })),
    );
  for (const entry of entries) {
    const m = ALIAS_REF.exec(entry.cidr);
    if (!m) continue;
    const scopeName = m[1] ?? "";
    const name = asciiLower(m[2] as string);
    const scope: Scope = { self: fw, line: entry.line, local: fw, compileLocal: fw, cluster };
    let found = scopeName !== "dc/" ? alias(scope, fw, name) : undefined;
    if (!found && scopeName !== "guest/") found = alias(scope, cluster, name);
    if (!found) {
      out.push({
        file: fw.file,
        line: entry.line,
        severity: "error",
        message: `ipset ${entry.set}: no alias '${entry.cidr}' defined above this line in ${where(scopeName, fw.kind === "guest" ? fw : null)}`,
      });
    }
  }
  return out;
}

/** Checks that need other files (pve-firewall's verify): undefined alias / ipset / group → error at that line. */
export function checkRefs(fw: FwFile, cluster: FwFile | null): Diagnostic[] {
  const clusterConf = fw.kind === "cluster" ? fw : cluster;
  const out: Diagnostic[] = [];
  const report = (line: number, found: Found) => {
    if (found.errors.length > 0) {
      out.push({ file: fw.file, line, severity: "error", message: found.errors.join("; ") });
    }
    if (found.warnings.length > 0) {
      out.push({ file: fw.file, line, severity: "warning", message: found.warnings.join("; ") });
    }
  };
  for (const rule of fw.rules) {
    const compileLocal = fw.kind === "cluster" ? null : fw;
    report(
      rule.line,
      checkRule(rule, { self: fw, line: rule.line, local: fw, compileLocal, cluster: clusterConf }),
    );
  }
  if (fw.kind === "cluster") {
    const groupRules = fw.trace?.groupRules ?? Object.values(fw.groups).flatMap((g) => g.rules);
    for (const rule of groupRules) {
      const scope: Scope = {
        self: fw,
        line: rule.line,
        local: null,
        compileLocal: null,
        cluster: fw,
      };
      report(rule.line, checkRule(rule, scope));
    }
  }
  out.push(...checkIpsetEntries(fw, clusterConf));
  return out.sort((a, b) => a.line - b.line);
}
