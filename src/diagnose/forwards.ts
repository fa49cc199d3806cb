import type { Config, Diagnostic, Forward, GuestNic, NatPlan, NodeInput } from "../model.js";
import { guestFirewallOn } from "../nat/compile.js";
import { type IpSet, ipToInt } from "../nat/ipv4.js";
import { resolveAddress } from "../nat/resolve.js";
import { type Storage, snippetPath } from "../pve/hookscript.js";
import { type PortRange, parsePorts } from "../pve/ports.js";
import { evaluateForward, type FilterPacket, type FilterTable } from "./filter.js";
import { evaluateGuestIn, guestPolicyIn, nicOf } from "./guestfw.js";
import { ANY } from "./match.js";

// `check` on a live node (issue 11): for each active or inactive forward, every reason it
// cannot carry traffic, as `where: severity: what — the fix`. Pure: the shell (cli/diagnose.ts)
// reads the facts; this module only judges them.

export interface NodeFacts {
  /** `iptables-save -t filter`, parsed; null when it could not be read. */
  filter: FilterTable | null;
  /** IPv4 addresses per interface, "203.0.113.10/24" as `ip -4 addr` lists them. */
  addresses: ReadonlyMap<string, readonly string[]>;
  /** The daemon's answer to a ping: null = it answered, else why not. */
  daemon: null | { notRunning: true } | { error: string };
  /** /etc/pve/storage.cfg, parsed. */
  storages: ReadonlyMap<string, Storage>;
  /** Snippet files that exist (their absolute paths as Proxmox sees them). */
  existingFiles: ReadonlySet<string>;
}

function label(f: Forward): string {
  const pub = `${f.public.address ?? "?"}:${f.public.ports ?? "*"}`;
  const priv = `${f.private.address ?? "?"}${f.private.ports ? `:${f.private.ports}` : ""}`;
  return f.direction === "in"
    ? `forward ${f.origin} (${f.proto ?? "all"} ${pub} → ${priv}${f.source ? ` from ${f.source}` : ""})`
    : `outbound NAT ${f.origin} (${priv} → ${f.destination ?? "anywhere"})`;
}

function where(file: string, line = 0) {
  return { file, line };
}

function portsOf(text: string | null): PortRange[] | null {
  if (text === null) return null;
  const r = parsePorts(text);
  return Array.isArray(r) ? r : null;
}

/** The forward's allowed sources (null: anyone), from the typed DNAT rules of the plan. */
export function sourcesOf(plan: NatPlan, index: number): IpSet | null {
  const set: IpSet = [];
  for (const oc of plan.chains) {
    for (const r of oc.dnat) {
      if (r.forward !== index || r.target.kind !== "DNAT") continue;
      if (r.source === null) return null;
      const res = resolveAddress(r.source, { guest: null, cluster: null });
      if (res.kind !== "v4") return null;
      set.push(...res.set);
    }
  }
  return set.length === 0 ? null : set;
}

/** The local guest NIC that holds the forward's private address, with its guest. */
function targetNic(input: NodeInput, f: Forward): { vmid: number; nic: GuestNic } | null {
  const addr = f.private.address;
  if (addr === null) return null;
  const guests =
    f.vmid !== null ? [[f.vmid, input.guests[f.vmid]] as const] : Object.entries(input.guests);
  for (const [vmid, g] of guests) {
    const nic = g ? nicOf(g.conf.nics, addr) : null;
    if (nic) return { vmid: Number(vmid), nic };
  }
  return null;
}

function addressesOn(facts: NodeFacts, dev: string): string[] {
  return (facts.addresses.get(dev) ?? []).map((a) => a.split("/")[0] as string);
}

/** A firewall=1 NIC's bridge and its two ports (pve-firewall's names). */
interface Fwbr {
  dev: string;
  /** fwln<vmid>i<n>: the port towards vmbrX. */
  link: string;
  /** tap<vmid>i<n> (qemu) / veth<vmid>i<n> (lxc): the guest's port. */
  guest: string;
  nic: number;
}

function filterDiagnostic(
  config: Config,
  facts: NodeFacts,
  f: Forward,
  pkt: FilterPacket,
  fwbr: Fwbr | null = null,
): Diagnostic | null {
  if (!facts.filter) return null;
  const v = evaluateForward(facts.filter, pkt);
  if (v.verdict !== "drop") return null;
  const docker = facts.filter.chains.has("DOCKER");
  const what = fwbr ? `its bridged pass through ${fwbr.dev} (net${fwbr.nic} firewall=1)` : "it";
  const by = v.rule
    ? `the rule "${v.rule}" drops ${what}`
    : `the filter FORWARD policy is ${v.policy} and no rule accepts ${what}${docker ? " (a DOCKER chain exists: Docker sets this policy when it starts)" : ""}`;
  const chain = docker ? "DOCKER-USER" : "FORWARD";
  const keep = "(and keep it in your firewall configuration)";
  let fix: string;
  if (fwbr) {
    // Appended, the rule comes after pve-firewall's own: a guest firewall switched on later
    // still decides. Only a dropping rule needs it first, and then for this bridge alone.
    fix = v.rule
      ? `accept what ${fwbr.dev} bridges: iptables -I FORWARD -i ${fwbr.dev} -o ${fwbr.dev} -j ACCEPT ${keep}`
      : `accept what the firewall bridges carry after pve-firewall's own rules: iptables -A FORWARD -i fwbr+ -o fwbr+ -j ACCEPT ${keep}`;
  } else {
    fix =
      f.direction === "in"
        ? `accept forwarded connections in both directions: iptables -I ${chain} -m conntrack --ctstate DNAT -j ACCEPT ${keep}`
        : `accept the guest's outbound traffic and its replies: iptables -I ${chain} -i ${pkt.in ?? "<bridge>"} -o ${config.externalInterface} -j ACCEPT; iptables -I ${chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`;
  }
  return {
    ...where("iptables:filter"),
    severity: "error",
    message: `${label(f)}: ${by} — ${fix}`,
  };
}

/** The fwbr bridge a forward's traffic crosses, when FORWARD (not the guest firewall) judges
 *  that pass: a firewall=1 NIC while pve-firewall does not filter it (the datacenter or guest
 *  firewall off; where it filters, guestFwDiagnostic judges the pass by the guest's rules).
 *  None with the nftables firewall (pve-firewall Helpers.pm needs_fwbr). */
function fwbrOf(input: NodeInput, vmid: number, nic: GuestNic): Fwbr | null {
  const g = input.guests[vmid];
  if (!g || !nic.firewall || input.host?.options.nftables === "1") return null;
  if (guestFirewallOn(input.cluster, g.fw)) return null;
  const port = g.conf.kind === "qemu" ? "tap" : "veth";
  return {
    dev: `fwbr${vmid}i${nic.index}`,
    link: `fwln${vmid}i${nic.index}`,
    guest: `${port}${vmid}i${nic.index}`,
    nic: nic.index,
  };
}

/** `pkt`'s bridged pass through the fwbr device, from the `from` port to the other one. */
function acrossFwbr(pkt: FilterPacket, fwbr: Fwbr, from: "link" | "guest"): FilterPacket {
  const [physIn, physOut] = from === "link" ? [fwbr.link, fwbr.guest] : [fwbr.guest, fwbr.link];
  return { ...pkt, in: fwbr.dev, out: fwbr.dev, bridged: true, physIn, physOut };
}

/** Whether conntrack tracks the bridged pass through `dev` in its own zone (then the packet is
 *  NEW there, not DNAT). */
function zoned(plan: NatPlan, dev: string): boolean {
  const e = plan.entry;
  return e.zoneFix && (!e.zoneRule || e.zoneDevices.some((d) => d === dev || d === "fwbr+"));
}

function guestFwDiagnostic(
  input: NodeInput,
  f: Forward,
  sources: IpSet | null,
  vmid: number,
  nic: GuestNic,
): Diagnostic | null {
  const g = input.guests[vmid];
  if (!g?.fw || !nic.firewall || !guestFirewallOn(input.cluster, g.fw)) return null;
  const ports = portsOf(f.private.ports);
  if (f.proto === null || ports === null || f.private.address === null) return null;
  const v = evaluateGuestIn(
    { nic: nic.index, source: sources, dest: f.private.address, proto: f.proto, dport: ports },
    g.fw,
    input.cluster,
  );
  if (v.verdict !== "drop") return null;
  const from = f.source ? ` -source ${f.source}` : "";
  const want = `IN ACCEPT${from} -p ${f.proto} -dport ${f.private.ports}`;
  const by = v.rule
    ? `its rule at ${v.rule.file}:${v.rule.line} (${v.rule.action}) matches first`
    : `policy_in is ${guestPolicyIn(g.fw)} and no IN rule accepts ${f.proto} port ${f.private.ports} to ${f.private.address}${sources === null ? "" : ` from ${f.source}`}`;
  const line = v.rule?.file === g.fw.file ? v.rule.line : 0;
  return {
    ...where(g.fw.file, line),
    severity: "error",
    message: `${label(f)}: the guest firewall of ${vmid} (net${nic.index} firewall=1, enable: 1) drops the forwarded traffic after DNAT: ${by} — add "${want}" to [RULES] of ${g.fw.file}${v.rule ? " before that rule" : ""}`,
  };
}

function gatewayDiagnostic(
  input: NodeInput,
  facts: NodeFacts,
  vmid: number,
  nic: GuestNic,
): Diagnostic | null {
  const g = input.guests[vmid];
  if (!g || !nic.gw || !nic.bridge) return null;
  const mine = addressesOn(facts, nic.bridge);
  if (mine.includes(nic.gw)) return null;
  const ours = mine[0];
  const key = g.conf.kind === "qemu" ? `ipconfig${nic.index}` : `net${nic.index}`;
  const tool = g.conf.kind === "qemu" ? "qm" : "pct";
  const fix = ours
    ? `set gw=${ours} (${tool} set ${vmid} --${key} …,gw=${ours}; the guest takes it at its next start)`
    : `give ${nic.bridge} an address of the guest network and use it as gw=`;
  return {
    ...where(g.conf.file),
    severity: "error",
    message: `guest ${vmid} net${nic.index}: gw=${nic.gw} is not an address of this node on ${nic.bridge} (${mine.join(", ") || "none"}): its replies to forwarded traffic never reach pve-nat's NAT — ${fix}`,
  };
}

/** The prefix length of the external interface's subnet holding `addr` (the one to add it
 *  with), or null when none of its addresses' subnets does. */
function prefixFor(facts: NodeFacts, dev: string, addr: string): number | null {
  const a = ipToInt(addr);
  for (const cidr of facts.addresses.get(dev) ?? []) {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
    if (!m) continue;
    const len = Number(m[2]);
    const size = 2 ** (32 - len);
    const lo = Math.floor(ipToInt(m[1] as string) / size) * size;
    if (a >= lo && a < lo + size) return len;
  }
  return null;
}

function publicDiagnostic(config: Config, facts: NodeFacts, f: Forward): Diagnostic | null {
  const addr = f.public.address;
  if (addr === null) return null;
  const ext = config.externalInterface;
  if (addressesOn(facts, ext).includes(addr)) return null;
  const elsewhere = [...facts.addresses.keys()].find((dev) =>
    addressesOn(facts, dev).includes(addr),
  );
  const prefix = prefixFor(facts, ext, addr);
  const fix = `add it: ip addr add ${addr}/${prefix ?? "<prefix>"} dev ${ext} (and in /etc/network/interfaces), or use an address of ${ext} in the rule or public_address`;
  const lost = f.direction === "in" ? "nothing arrives for it" : "replies to it never arrive";
  // Certain: on another interface (the DNAT rules match on the external one), or in a subnet
  // of the external interface where nobody answers ARP for it. Outside every subnet of the
  // node, a provider may route it to the node's address (an additional subnet): it may work.
  if (elsewhere || prefix !== null) {
    const why = elsewhere
      ? `it is on ${elsewhere}`
      : `in ${ext}'s subnet, but no interface of this node holds it: nobody answers ARP for it`;
    return {
      ...where("iptables:nat"),
      severity: "error",
      message: `${label(f)}: the public address ${addr} is not on ${ext} (${why}): ${lost} — ${fix}`,
    };
  }
  return {
    ...where("iptables:nat"),
    severity: "warning",
    message: `${label(f)}: the public address ${addr} is on no interface of this node: ${lost} unless your provider routes it to this node — ${fix}`,
  };
}

function hookDiagnostics(input: NodeInput, facts: NodeFacts, vmid: number): Diagnostic[] {
  const g = input.guests[vmid];
  if (!g) return [];
  const at = where(g.conf.file);
  const volid = g.conf.hookscript;
  if (volid === null) {
    return [
      {
        ...at,
        severity: "info",
        message: `guest ${vmid} has NAT rules but no hookscript: its forwards go live only at the next poll after it starts — pve-nat attach ${vmid}`,
      },
    ];
  }
  const file = snippetPath(volid, new Map(facts.storages));
  const storageId = volid.split(":")[0] ?? "";
  const storage = facts.storages.get(storageId);
  const wouldNotStart = `Proxmox refuses to start guest ${vmid}`;
  if (typeof file !== "string") {
    return [
      {
        ...at,
        severity: "error",
        message: `hookscript ${volid}: ${file.error}: ${wouldNotStart} — pve-nat attach --force ${vmid}`,
      },
    ];
  }
  if (storage && !storage.content.includes("snippets")) {
    const content = [...storage.content, "snippets"].join(",");
    return [
      {
        ...at,
        severity: "error",
        message: `hookscript ${volid}: storage ${storageId} does not allow snippets content: ${wouldNotStart} — pvesm set ${storageId} --content ${content}`,
      },
    ];
  }
  if (!facts.existingFiles.has(file)) {
    return [
      {
        ...at,
        severity: "error",
        message: `hookscript ${volid}: ${file} does not exist: ${wouldNotStart} — reinstall pve-nat (it ships the snippet) or pve-nat attach --force ${vmid}`,
      },
    ];
  }
  return [];
}

/** Snippet files `diagnoseForwards` will ask about (the shell checks which exist). */
export function snippetFiles(input: NodeInput, storages: ReadonlyMap<string, Storage>): string[] {
  const out: string[] = [];
  for (const g of Object.values(input.guests)) {
    if (!g.conf.hookscript) continue;
    const f = snippetPath(g.conf.hookscript, new Map(storages));
    if (typeof f === "string") out.push(f);
  }
  return out;
}

/** Every reason a forward cannot carry traffic, once per cause; `only`: that guest's forwards
 *  alone (`check <vmid>`). */
export function diagnoseForwards(
  plan: NatPlan,
  input: NodeInput,
  facts: NodeFacts,
  only: number | null = null,
): Diagnostic[] {
  const config = input.config;
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  const add = (d: Diagnostic | null) => {
    if (!d) return;
    const k = `${d.file}\0${d.line}\0${d.message}`;
    if (seen.has(k)) return;
    seen.add(k);
    out.push(d);
  };
  const judged = (f: Forward) =>
    (f.state === "active" || f.state === "inactive") && (only === null || f.vmid === only);
  const live = plan.forwards.filter(judged);
  const hooked = new Set<number>();
  plan.forwards.forEach((f, i) => {
    // Indexes stay the plan's: the DNAT rules name their forward by it (sourcesOf).
    if (!judged(f)) return;
    const target = targetNic(input, f);
    const bridge = target?.nic.bridge ?? null;
    const fwbr = target ? fwbrOf(input, target.vmid, target.nic) : null;
    const guestAddr = f.private.address
      ? [{ lo: ipToInt(f.private.address), hi: ipToInt(f.private.address) }]
      : null;
    if (f.direction === "in") {
      const sources = sourcesOf(plan, i);
      const pkt: FilterPacket = {
        in: config.externalInterface,
        out: bridge,
        source: sources,
        dest: guestAddr,
        proto: f.proto,
        dport: portsOf(f.private.ports),
        ctstate: ["NEW", "DNAT"],
      };
      add(filterDiagnostic(config, facts, f, pkt));
      if (fwbr) {
        const across: FilterPacket = {
          ...acrossFwbr(pkt, fwbr, "link"),
          ctstate: zoned(plan, fwbr.dev) ? ["NEW"] : ["NEW", "DNAT"],
        };
        add(filterDiagnostic(config, facts, f, across, fwbr));
      }
      if (target) add(guestFwDiagnostic(input, f, sources, target.vmid, target.nic));
    } else {
      const dst = f.destination
        ? resolveAddress(f.destination, {
            guest: input.guests[f.vmid ?? -1]?.fw ?? null,
            cluster: input.cluster,
          })
        : null;
      const pkt: FilterPacket = {
        in: bridge,
        out: config.externalInterface,
        source: guestAddr,
        dest: dst === null ? ANY : dst.kind === "v4" ? dst.set : null,
        proto: f.proto,
        dport: portsOf(f.private.ports),
        ctstate: ["NEW"],
      };
      // The guest's packet crosses its fwbr first, then is routed out.
      if (fwbr) {
        add(filterDiagnostic(config, facts, f, acrossFwbr(pkt, fwbr, "guest"), fwbr));
      }
      add(filterDiagnostic(config, facts, f, pkt));
    }
    add(publicDiagnostic(config, facts, f));
    if (target) add(gatewayDiagnostic(input, facts, target.vmid, target.nic));
    if (f.vmid !== null && !hooked.has(f.vmid)) {
      hooked.add(f.vmid);
      for (const d of hookDiagnostics(input, facts, f.vmid)) add(d);
    }
  });
  if (live.length > 0 && facts.daemon !== null) {
    const why =
      "notRunning" in facts.daemon ? "is not running" : `does not answer (${facts.daemon.error})`;
    add({
      ...where("pve-nat.service"),
      severity: "warning",
      message: `the daemon ${why}: no guest start, stop or edit changes the forwards until it runs — systemctl restart pve-nat`,
    });
  }
  return out;
}
