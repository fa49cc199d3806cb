// Random simulated nodes for equivalence tests (compile and render with a memo vs without):
// a node as texts (cluster.fw, host.fw, per guest .conf/.fw/run state, config), parsed
// with the real grammar, and random edits of it. Parsed values are memoised per text (and per
// cluster.fw object for .fw files), as the daemon's cache (pve/cache.ts) keeps them, so what an
// edit did not touch keeps its identity.

import { parseConfig } from "../../src/config/conf.js";
import type {
  Config,
  Diagnostic,
  FwFile,
  GuestConf,
  HostPorts,
  NodeInput,
  RunState,
} from "../../src/model.js";
import { parseGuestConf } from "../../src/pve/guestconf.js";
import { emptyFacts } from "../../src/pve/learned.js";
import { loadFw } from "../../src/pve/nodefiles.js";

/** Mulberry32: a small seeded PRNG, so a failing seed can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimGuest {
  conf: string;
  fw: string | null;
  state: RunState;
}

export interface SimNode {
  config: string;
  /** null = public_address auto without an address. */
  publicAddress: string | null;
  hostPorts: HostPorts;
  cluster: string | null;
  host: string | null;
  guests: Map<number, SimGuest>;
  /** Extra loader diagnostics (e.g. an error line that rejects a rule). */
  extra: Diagnostic[];
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

/** Public ports drawn from a small pool, so forwards collide often. */
const PORTS = [822, 823, 824, 8080, 8081, 22, 3128, 9000, 9001, 2000];

function guestRule(r: () => number, vmid: number): string {
  const p = pick(r, PORTS);
  const ip = `10.10.10.${(vmid % 200) + 2}`;
  return pick(r, [
    `IN ACCEPT -p tcp -dport 22 # NAT:${p}`,
    `IN ACCEPT -p tcp -dport 22 # NAT:${p}`,
    `IN ACCEPT -p udp -dport 53 # NAT:${p}`,
    `IN ACCEPT -p tcp -sport ${p} -dport 80 # NAT web`,
    `IN ACCEPT -p tcp -dport 80 # NAT`,
    `IN SSH(ACCEPT) # NAT:${p}`,
    `IN DNS(ACCEPT) # NAT:${p}`,
    `IN ACCEPT -p tcp -dport 2000:2002 # NAT:${p}:${p + 2}`,
    `IN ACCEPT -p tcp -dport 80 # NAT:203.0.113.99:${p}`,
    `IN ACCEPT -p tcp -dport 25 -dest ${ip} # NAT:${p}`,
    `IN ACCEPT -p tcp -dport 25 -i net1 # NAT:${p}`,
    `IN ACCEPT -source +office -p tcp -dport 443 # NAT:${p}`,
    `IN ACCEPT -source +dc/office -p tcp -dport 443 # NAT:${p}`,
    `IN ACCEPT -source admin -p tcp -dport 3389 # NAT:${p}`,
    `IN ACCEPT -source mine -p tcp -dport 3389 # NAT:${p}`,
    `IN ACCEPT -source 2001:db8::1 -p tcp -dport 22 # NAT:${p}`,
    `|IN ACCEPT -p tcp -dport 22 # NAT:${p}`,
    `IN DROP -p tcp -dport 22 # NAT:${p}`,
    `IN ACCEPT -dport 22 # NAT:${p}`,
    `IN ACCEPT -p tcp -dport 22 # NATIVE`,
    `IN ACCEPT -p tcp -dport 22 # NAT:99999`,
    `OUT ACCEPT # NAT outbound`,
    `OUT ACCEPT -dest 198.51.100.0/24 # NAT:203.0.113.20`,
    `OUT ACCEPT -p tcp -dport 25 # NAT`,
    "GROUP web",
    "GROUP web -i net0",
    "GROUP nosuch",
    "IN ACCEPT -p tcp -dport 22",
  ]);
}

function guestFw(r: () => number, vmid: number): string {
  const lines: string[] = [];
  if (r() < 0.5) lines.push("[OPTIONS]", "", r() < 0.7 ? "enable: 1" : "enable: 0", "");
  if (r() < 0.3) lines.push("[ALIASES]", "", `mine 198.51.100.${vmid % 200}`, "");
  if (r() < 0.2) lines.push("[IPSET office]", "", "198.51.100.64/26", "");
  lines.push("[RULES]", "");
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) lines.push(guestRule(r, vmid));
  return `${lines.join("\n")}\n`;
}

function guestConf(r: () => number, vmid: number, lxc: boolean): string {
  const ip = `10.10.10.${(vmid % 200) + 2}`;
  const fw = r() < 0.5 ? ",firewall=1" : "";
  const addr = pick(r, [`ip=${ip}/24`, `ip=${ip}/24`, `ip=${ip}/24`, "ip=dhcp", ""]);
  if (lxc) {
    const lines = [`hostname: ct${vmid}`, `net0: name=eth0,bridge=vmbr1${fw},${addr}`];
    if (r() < 0.2) lines.push(`net1: name=eth1,bridge=vmbr1,ip=10.10.20.${vmid % 200}/24`);
    return `${lines.join("\n")}\n`;
  }
  const lines = [`name: vm${vmid}`, `net0: virtio=AA:BB:CC:DD:EE:01,bridge=vmbr1${fw}`];
  if (addr) lines.push(`ipconfig0: ${addr},gw=10.10.10.1`);
  return `${lines.join("\n")}\n`;
}

function clusterFw(r: () => number): string | null {
  if (r() < 0.1) return null;
  const lines = ["[OPTIONS]", "", "enable: 1", "", "[ALIASES]", ""];
  if (r() < 0.8) lines.push(`admin 198.51.100.${Math.floor(r() * 200)}`);
  lines.push("", "[IPSET office]", "", "198.51.100.0/24", "!198.51.100.5", "");
  lines.push("[RULES]", "");
  if (r() < 0.5) lines.push(`IN ACCEPT -p tcp -dport 80 -dest 10.10.10.5 # NAT:${pick(r, PORTS)}`);
  if (r() < 0.3) lines.push("OUT ACCEPT -source 10.10.30.0/24 # NAT");
  lines.push("", "[group web]", "");
  const n = Math.floor(r() * 3);
  for (let i = 0; i < n; i++) lines.push(`IN ACCEPT -p tcp -dport 80 # NAT:${pick(r, PORTS)}`);
  return `${lines.join("\n")}\n`;
}

function hostFw(r: () => number): string | null {
  if (r() < 0.4) return null;
  const lines = ["[RULES]", ""];
  if (r() < 0.6) lines.push(`IN ACCEPT -p tcp -dport 22 -dest 10.10.10.9 # NAT:${pick(r, PORTS)}`);
  if (r() < 0.3) lines.push("IN ACCEPT -p tcp -dport 22 # NAT:7000");
  return `${lines.join("\n")}\n`;
}

function configText(r: () => number): string {
  const lines = ["node = pve1"];
  if (r() < 0.3) lines.push("hairpin = yes");
  if (r() < 0.2) lines.push("allow_host_ports = 22");
  if (r() < 0.1) lines.push("external_interface = vmbr0.5");
  if (r() < 0.2) lines.push("conntrack_zone_fix = no");
  return `${lines.join("\n")}\n`;
}

function state(r: () => number): RunState {
  return pick(r, ["running", "running", "running", "stopped", "starting"] as const);
}

export function randomNode(r: () => number, count: number): SimNode {
  const guests = new Map<number, SimGuest>();
  for (let i = 0; i < count; i++) {
    const vmid = 100 + Math.floor(r() * 60);
    guests.set(vmid, {
      conf: guestConf(r, vmid, r() < 0.6),
      fw: r() < 0.9 ? guestFw(r, vmid) : null,
      state: state(r),
    });
  }
  return {
    config: configText(r),
    publicAddress: r() < 0.9 ? "203.0.113.10" : null,
    hostPorts: { any: [22], at: {} },
    cluster: clusterFw(r),
    host: hostFw(r),
    guests,
    extra: [],
  };
}

/** One random edit; returns the owners it touched ("all" for shared sources). */
export function randomEdit(r: () => number, node: SimNode): number[] | "all" {
  const vmids = [...node.guests.keys()];
  const vmid = vmids.length > 0 ? pick(r, vmids) : 100;
  const g = node.guests.get(vmid);
  const x = r();
  if (x < 0.35 && g) {
    g.fw = guestFw(r, vmid);
    return [vmid];
  }
  if (x < 0.5 && g) {
    g.state = state(r);
    return [vmid];
  }
  if (x < 0.58 && g) {
    g.conf = guestConf(r, vmid, g.conf.startsWith("hostname"));
    return [vmid];
  }
  if (x < 0.66) {
    const v = 100 + Math.floor(r() * 60);
    node.guests.set(v, { conf: guestConf(r, v, r() < 0.6), fw: guestFw(r, v), state: state(r) });
    return [v];
  }
  if (x < 0.72 && g) {
    node.guests.delete(vmid);
    return [vmid];
  }
  if (x < 0.77 && g) {
    g.fw = null;
    return [vmid];
  }
  if (x < 0.82 && g) {
    // A loader diagnostic rejecting one of this guest's lines, or none any more.
    node.extra =
      node.extra.length > 0
        ? []
        : [
            {
              file: `firewall/${vmid}.fw`,
              line: 3 + Math.floor(r() * 6),
              severity: "error",
              message: "cannot use",
            },
          ];
    return "all";
  }
  if (x < 0.88) {
    node.cluster = clusterFw(r);
    return "all";
  }
  if (x < 0.92) {
    node.host = hostFw(r);
    return "all";
  }
  if (x < 0.95) {
    node.config = configText(r);
    return "all";
  }
  if (x < 0.98) {
    node.publicAddress = node.publicAddress === null ? "203.0.113.10" : null;
    return "all";
  }
  node.hostPorts =
    r() < 0.5 ? { any: [22], at: {} } : { any: [22, 9000], at: { "203.0.113.5": [824] } };
  return "all";
}

/** Parsed values memoised per text, so unchanged sources keep their identity. */
export function inputBuilder(): (node: SimNode) => NodeInput {
  const configs = new Map<string, Config>();
  const fws = new Map<string, { cluster: FwFile | null; fw: FwFile | null }>();
  const confs = new Map<string, GuestConf>();
  let hostPorts: HostPorts = { any: [], at: {} };
  let extra: Diagnostic[] = [];
  const fwOf = (
    text: string | null,
    file: string,
    kind: "cluster" | "host" | "guest",
    cluster: FwFile | null,
  ) => {
    if (text === null) return null;
    const k = `${kind}\0${file}\0${text}`;
    const hit = fws.get(k);
    if (hit && hit.cluster === cluster) return hit.fw;
    const fw = loadFw(text, file, kind, cluster, []);
    fws.set(k, { cluster, fw });
    return fw;
  };
  return (node) => {
    let config = configs.get(node.config);
    if (!config) {
      config = parseConfig(node.config, "/etc/pve-nat/pve-nat.conf").config;
      configs.set(node.config, config);
    }
    if (JSON.stringify(hostPorts) !== JSON.stringify(node.hostPorts)) hostPorts = node.hostPorts;
    if (extra.length !== node.extra.length || extra.some((d, i) => d !== node.extra[i]))
      extra = [...node.extra];
    const cluster = fwOf(node.cluster, "firewall/cluster.fw", "cluster", null);
    const host = fwOf(node.host, "nodes/pve1/host.fw", "host", cluster);
    const guests: NodeInput["guests"] = {};
    for (const vmid of [...node.guests.keys()].sort((a, b) => a - b)) {
      const g = node.guests.get(vmid) as SimGuest;
      const lxc = g.conf.startsWith("hostname");
      const file = `nodes/pve1/${lxc ? "lxc" : "qemu-server"}/${vmid}.conf`;
      const k = `${file}\0${g.conf}`;
      let conf = confs.get(k);
      if (!conf) {
        conf = parseGuestConf(g.conf, vmid, lxc ? "lxc" : "qemu", file);
        confs.set(k, conf);
      }
      guests[vmid] = {
        conf,
        fw: fwOf(g.fw, `firewall/${vmid}.fw`, "guest", cluster),
        state: g.state,
      };
    }
    return {
      node: "pve1",
      config,
      publicAddress: node.publicAddress,
      hostPorts,
      cluster,
      host,
      guests,
      addresses: NO_ADDRESSES,
      diagnostics: [...extra],
    };
  };
}

/** The same (empty) facts every time: a fresh object would look like an SDN change. */
const NO_ADDRESSES = emptyFacts();
