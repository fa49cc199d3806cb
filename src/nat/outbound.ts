import { formatPorts } from "../pve/ports.js";
import { type IpSet, ipToInt, toCidrs } from "./ipv4.js";
import { chunks, ports } from "./portmap.js";
import { guestAddress, resolveEnds } from "./resolve.js";
import { type BuildInput, type Built, drafts, isErr } from "./types.js";

// OUT NAT rule → SNAT/MASQUERADE (SPEC §2.2): traffic from the guest (-source, default its
// address) to -dest (default anywhere) leaving via external_interface.

export function buildSnat({ c, rule, eff, proto, nat, ctx, note, comment }: BuildInput): Built {
  const ends = resolveEnds(eff, ctx.scope, note);
  if (ends === "ipv6" || isErr(ends)) return ends;
  const { source, dest } = ends;
  const dport = ports(eff.dport, "-dport");
  const sport = ports(eff.sport, "-sport");
  if (isErr(dport)) return dport;
  if (isErr(sport)) return sport;
  if (proto === null && (dport !== null || sport !== null))
    return { error: "ports need -p tcp or -p udp" };
  c.forward.private.ports = dport === null ? null : formatPorts(dport);
  if (nat.form === "explicit" && nat.ports !== null) {
    return { error: "a NAT OUT rule names only the SNAT address (NAT:<address>), not ports" };
  }

  let from: IpSet;
  if (source !== null) {
    from = source.set;
    const cidrs = toCidrs(source.set);
    c.forward.private.address = source.single ?? (cidrs.length === 1 ? (cidrs[0] as string) : null);
    c.forward.private.addressSource = "rule";
  } else if (ctx.guest === null) {
    return { error: "a node-level NAT OUT rule (cluster.fw, host.fw) needs -source" };
  } else {
    const g = ctx.guest;
    const a = guestAddress(g.conf, rule.iface ?? ctx.groupIface, "-source", g.addresses);
    if ("error" in a || "pending" in a) return a;
    c.forward.private.address = a.address;
    c.forward.private.addressSource = a.source;
    from = singleSet(a.address);
  }
  redundantSnat(from, ctx, note);

  const configured = ctx.config.publicAddress !== "auto" ? ctx.config.publicAddress : null;
  const snatAddress = (nat.form === "explicit" ? nat.address : null) ?? configured;
  c.forward.public.address = snatAddress;
  c.snat = drafts(toCidrs(from), dest === null ? [null] : toCidrs(dest.set), chunks(dport), {
    proto,
    sport: sport === null ? null : formatPorts(sport),
    outInterface: ctx.config.externalInterface,
    target: snatAddress === null ? { kind: "MASQUERADE" } : { kind: "SNAT", address: snatAddress },
    comment,
  });
  return "ok";
}

/** Proxmox already masquerades an SDN subnet with `snat 1` (its own POSTROUTING SNAT rule): an
 *  OUT NAT rule for guests inside it still applies (pve-nat's chain comes first), but is said. */
function redundantSnat(from: IpSet, ctx: BuildInput["ctx"], note: BuildInput["note"]): void {
  for (const s of ctx.sdn.subnets) {
    if (!s.snat) continue;
    const [net, len] = s.cidr.split("/") as [string, string];
    const lo = ipToInt(net);
    const hi = lo + 2 ** (32 - Number(len)) - 1;
    if (!from.every((iv) => iv.lo >= lo && iv.hi <= hi)) continue;
    note(
      "warning",
      `redundant: SDN subnet ${s.cidr} (sdn/subnets.cfg:${s.line}) has snat 1, so Proxmox already masquerades it; ` +
        "keep this rule only to pick another SNAT address (NAT:<address>)",
    );
    return;
  }
}

function singleSet(address: string): IpSet {
  const n = ipToInt(address);
  return [{ lo: n, hi: n }];
}
