import type { GuestConf } from "../model.js";
import { formatPorts, type PortRange } from "../pve/ports.js";
import { toCidrs } from "./ipv4.js";
import { chunks, mapPorts, ports } from "./portmap.js";
import { guestAddress, networkFor, resolveEnds, staticAddresses } from "./resolve.js";
import { type BuildInput, type Built, drafts, isErr } from "./types.js";

// IN NAT rule → DNAT (SPEC §2.2): public address + proto + public port(s), from -source if
// given, → guest address + private port(s); with hairpin, masquerade of hairpinned connections.

export function buildDnat({ c, rule, eff, proto, nat, ctx, note, comment }: BuildInput): Built {
  const ends = resolveEnds(eff, ctx.scope, note);
  if (ends === "ipv6" || isErr(ends)) return ends;
  const { source, dest } = ends;
  if (proto === null) return { error: "a NAT IN rule needs -p tcp or -p udp (or a macro)" };
  if (nat.form === "invalid") return { error: nat.message };

  const dport = ports(eff.dport, "-dport");
  const sport = ports(eff.sport, "-sport");
  if (isErr(dport)) return dport;
  if (isErr(sport)) return sport;
  let pub: PortRange[] | null;
  let priv: PortRange[] | null;
  let clientPorts: PortRange[] | null = null;
  if (nat.form === "explicit") {
    pub = nat.ports ?? dport;
    priv = dport ?? pub;
    clientPorts = sport;
  } else {
    pub = sport ?? dport;
    priv = dport ?? sport;
  }
  if (pub === null || priv === null) {
    return {
      error: "a NAT IN rule needs a port: -dport (private) and -sport or NAT:<port> (public)",
    };
  }
  c.forward.public.ports = formatPorts(pub);
  c.forward.private.ports = formatPorts(priv);
  const publicAddress = (nat.form === "explicit" ? nat.address : null) ?? ctx.publicAddress;
  c.forward.public.address = publicAddress;

  let target: string;
  let learnedNetwork: string | null = null;
  if (dest?.single) {
    target = dest.single;
    c.forward.private.addressSource = "rule";
    const hostAddresses = [ctx.publicAddress, publicAddress].filter((x) => x !== null);
    if (ctx.guest !== null) checkDest(target, hostAddresses, ctx.guest.conf, note);
  } else if (ctx.guest === null) {
    return {
      error: "a node-level NAT IN rule (cluster.fw, host.fw) needs -dest naming one IPv4 address",
    };
  } else {
    const g = ctx.guest;
    const a = guestAddress(g.conf, rule.iface ?? ctx.groupIface, "-dest", g.addresses);
    if ("error" in a || "pending" in a) return a;
    target = a.address;
    c.forward.private.addressSource = a.source;
    learnedNetwork = a.network;
  }
  c.forward.private.address = target;
  const mapped = mapPorts(pub, priv);
  if (isErr(mapped)) return mapped;
  if (publicAddress === null) {
    return {
      error:
        "no public address: set public_address in pve-nat.conf or name it in the comment (NAT:<address>:<port>)",
    };
  }
  c.claim = { address: publicAddress, proto, ports: pub };

  const sources = source === null ? [null] : toCidrs(source.set);
  c.dnat = drafts(sources, [publicAddress], chunks(pub), {
    proto,
    sport: clientPorts === null ? null : formatPorts(clientPorts),
    target: { kind: "DNAT", address: target, ports: mapped.to },
    comment,
  });
  if (ctx.config.hairpin) {
    const nics = ctx.guest ? ctx.guest.conf.nics : ctx.localNics;
    let network = networkFor(target, nics) ?? learnedNetwork;
    if (network === null) {
      // No NIC config says which network the target is on; /24 is the common case.
      network = `${target.split(".").slice(0, 3).join(".")}.0/24`;
      note(
        "info",
        `hairpin: no guest NIC with a static address holds ${target}; hairpinned connections from ${network} are masqueraded`,
      );
    }
    const privPorts = mapped.to === null ? pub : priv;
    c.snat = drafts([network], [target], chunks(privPorts), {
      proto,
      ctstateDnat: true,
      target: { kind: "MASQUERADE" },
      comment,
    });
  }
  return "ok";
}

/** A guest rule's -dest that is not the guest (SPEC §2.2): still applied, but said. */
function checkDest(
  dest: string,
  hostAddresses: string[],
  conf: GuestConf,
  note: BuildInput["note"],
): void {
  const own = staticAddresses(conf);
  if (own.includes(dest)) return;
  const has = own.length > 0 ? own.join(", ") : "no static IPv4 address in its config";
  if (hostAddresses.includes(dest)) {
    note(
      "warning",
      `-dest ${dest} is the host's public address, not guest ${conf.vmid}'s (${has}): ` +
        "the forward leads back to the host; name the guest's address or drop -dest",
    );
  } else if (own.length > 0) {
    note(
      "warning",
      `-dest ${dest} is not an address of guest ${conf.vmid} (its config has ${has}): ` +
        `traffic is forwarded to ${dest}`,
    );
  }
}
