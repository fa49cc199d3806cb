import type { Diagnostic, FwRule, Proto } from "../model.js";
import { findMacro, type MacroEntry, macroFamily } from "../pve/macros.js";
import { buildDnat } from "./inbound.js";
import { buildSnat } from "./outbound.js";
import { ruleNics } from "./resolve.js";
import { type NatComment, parseNatComment } from "./trigger.js";
import { type Candidate, type Effective, isErr, isPending, type RuleContext } from "./types.js";

export type { Candidate, RuleContext, RuleDraft } from "./types.js";

// One firewall rule → the forwards it asks for (a multi-entry macro asks for several), each
// with the typed rules that realise it. Problems become diagnostics at the rule's line and, when
// the rule is a NAT rule, a forward in state "error" so check/plan/status show it.

/** The last file name made safe for a comment: a guest's rules come one file after another. */
let safeFile = { file: "", safe: "" };

function commentFor(ctx: RuleContext, rule: FwRule): string {
  const who = ctx.owner === "NODE" ? "node" : `vm${ctx.owner}`;
  if (safeFile.file !== rule.file) {
    safeFile = { file: rule.file, safe: rule.file.replace(/[^A-Za-z0-9._/-]/g, "_").slice(0, 120) };
  }
  return `pve-nat ${who} ${safeFile.safe}:${rule.line}`;
}

const MACRO_KEYS = ["proto", "dport", "sport", "source", "dest"] as const;

/** A rule without a macro: one entry that takes everything from the rule. */
const NO_MACRO: readonly MacroEntry[] = [{}];

/** pve-firewall's macro expansion: PARAM/SOURCE/DEST take the rule's value, the rule fills the
 *  rest, and a rule value contradicting the macro is an error. */
function applyMacro(rule: FwRule, entry: MacroEntry): Effective | { error: string } {
  const param: Effective = {
    proto: rule.proto,
    dport: rule.dport,
    sport: rule.sport,
    source: rule.source,
    dest: rule.dest,
  };
  if (entry === NO_MACRO[0]) return param;
  const out: Effective = { ...param };
  for (const k of MACRO_KEYS) {
    const v = entry[k];
    if (v === undefined) continue;
    if (v === "PARAM") continue;
    if (v === "SOURCE" || v === "DEST") {
      out[k] = v === "SOURCE" ? param.source : param.dest;
      continue;
    }
    const mine = param[k];
    if (mine !== null && mine !== v) {
      return { error: `parameter '${k}' is already defined by macro ${rule.macro} (value '${v}')` };
    }
    out[k] = k === "proto" ? v.toLowerCase() : v;
  }
  return out;
}

/** The explicit form an admin should write instead of a compatible form with -sport. */
function explicitSuggestion(
  rule: FwRule,
  nat: Extract<NatComment, { form: "compatible" }>,
): string {
  const parts = [
    rule.type.toUpperCase(),
    rule.macro ? `${rule.macro}(${rule.action})` : rule.action,
  ];
  if (rule.iface) parts.push(`-i ${rule.iface}`);
  if (rule.source) parts.push(`-source ${rule.source}`);
  if (rule.dest) parts.push(`-dest ${rule.dest}`);
  if (rule.proto) parts.push(`-p ${rule.proto}`);
  const dport = rule.dport ?? (rule.macro ? null : rule.sport);
  if (dport) parts.push(`-dport ${dport}`);
  parts.push(`# NAT:${rule.sport}${nat.text ? ` ${nat.text}` : ""}`);
  return parts.join(" ");
}

export function expandRule(rule: FwRule, ctx: RuleContext, diags: Diagnostic[]): Candidate[] {
  const nat = parseNatComment(rule.comment);
  if (nat === null || !rule.enabled) return [];
  const at = { file: rule.file, line: rule.line };
  // Facts about the rule itself are said once; facts about its use by one owner name the owner.
  const about = (severity: Diagnostic["severity"], message: string) =>
    diags.push({ ...at, severity, message });
  const note = (severity: Diagnostic["severity"], message: string) =>
    about(severity, ctx.via ? `${message} [${ctx.via}]` : message);
  if (rule.type === "forward" || rule.type === "group") {
    about("info", "NAT comment on a FORWARD rule: only IN and OUT rules are NAT rules");
    return [];
  }
  if (rule.action !== "ACCEPT") {
    about("info", `NAT comment on a ${rule.action} rule: only ACCEPT rules are NAT rules, ignored`);
    return [];
  }
  const direction = rule.type;
  const base = (): Candidate => ({
    forward: {
      vmid: ctx.owner === "NODE" ? null : ctx.owner,
      name: ctx.guest?.conf.name ?? null,
      direction,
      proto: null,
      public: { address: null, ports: null },
      private: { address: null, ports: null, addressSource: null },
      source: rule.source,
      destination: rule.dest,
      origin: `${rule.file}:${rule.line}`,
      state: "active",
      reason: null,
    },
    owner: ctx.owner,
    key: ctx.key,
    dnat: [],
    snat: [],
    claim: null,
    running: ctx.guest === null || ctx.guest.state !== "stopped",
    via: ctx.via,
  });
  const fail = (c: Candidate, message: string): Candidate[] => {
    note("error", `NAT rule not applied: ${message}`);
    c.forward.state = "error";
    c.forward.reason = message;
    return [c];
  };
  if (nat.form === "invalid") return fail(base(), nat.message);

  let entries = NO_MACRO;
  if (rule.macro !== null) {
    const macro = findMacro(rule.macro, 4);
    if (!macro) return fail(base(), `unknown macro '${rule.macro}'`);
    if (macroFamily(macro.name) === 6) {
      about(
        "warning",
        `IPv6 is not supported in NAT rules: macro ${macro.name} is IPv6-only, rule skipped`,
      );
      return [];
    }
    entries = macro.entries.filter(
      (e) => e.action === undefined || e.action === "PARAM" || e.action === "ACCEPT",
    );
  }
  const out: Candidate[] = [];
  entries.forEach((entry, i) => {
    const c = base();
    c.key = [...ctx.key, i];
    const eff = applyMacro(rule, entry);
    if (isErr(eff)) {
      out.push(...fail(c, eff.error));
      return;
    }
    if (eff.proto !== null && eff.proto !== "tcp" && eff.proto !== "udp") {
      const proto = eff.proto;
      if (entries.length > 1) {
        about(
          "info",
          `macro ${rule.macro}: the ${proto} entry is not NATed (only tcp and udp are)`,
        );
        return;
      }
      out.push(...fail(c, `protocol '${proto}' cannot be NATed: only tcp and udp`));
      return;
    }
    const proto = eff.proto as Proto | null;
    c.forward.proto = proto;
    c.forward.source = eff.source;
    c.forward.destination = eff.dest;
    const built =
      direction === "in"
        ? buildDnat({ c, rule, eff, proto, nat, ctx, note, comment: commentFor(ctx, rule) })
        : buildSnat({ c, rule, eff, proto, nat, ctx, note, comment: commentFor(ctx, rule) });
    if (built === "ipv6") {
      about(
        "warning",
        "IPv6 is not supported in NAT rules: rule skipped (IPv6 traffic is not NATed)",
      );
      return;
    }
    if (isErr(built)) {
      out.push(...fail(c, built.error));
      return;
    }
    if (isPending(built)) {
      // Not an error: the forward goes live by itself once the address is learned.
      if (c.running) note("info", `NAT forward pending: ${built.pending}`);
      c.forward.state = "pending";
      c.forward.reason = built.pending;
      c.forward.private.address = null;
      c.forward.private.addressSource = null;
      c.dnat = [];
      c.snat = [];
      c.claim = null;
      out.push(c);
      return;
    }
    out.push(c);
  });
  if (
    direction === "in" &&
    nat.form === "compatible" &&
    rule.sport !== null &&
    ctx.guest?.firewall &&
    // Only where the filter really applies (SPEC §8): a firewall=1 NIC the rule covers.
    ruleNics(ctx.guest.conf.nics, rule.iface ?? ctx.groupIface).some((n) => n.firewall) &&
    out.some((c) => c.forward.state !== "error")
  ) {
    note(
      "warning",
      `the guest firewall is enabled and this rule's filter matches source port ${rule.sport}, which ` +
        `forwarded traffic never has: write it in the explicit form "${explicitSuggestion(rule, nat)}"`,
    );
  }
  return out;
}
