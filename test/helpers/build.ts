// Small fixture builders for compile() tests: NodeInput / FwFile / GuestConf values built in
// code, so these tests do not depend on the file parsers. `rule()` reads a rule line in the
// pve-firewall shape (a test convenience, not the real grammar: no validation).

import { DEFAULTS } from "../../src/config/conf.js";
import type {
  AddressFacts,
  Config,
  FwFile,
  FwGroup,
  FwKind,
  FwRule,
  GuestConf,
  GuestKind,
  GuestNic,
  HostPorts,
  NodeInput,
  RunState,
} from "../../src/model.js";
import { emptyFacts } from "../../src/pve/learned.js";

export function rule(text: string, file = "firewall/107.fw", line = 4): FwRule {
  let body = text.trim();
  let comment: string | null = null;
  const hash = body.indexOf("#");
  if (hash >= 0) {
    comment = body.slice(hash + 1).trim();
    body = body.slice(0, hash).trim();
  }
  const enabled = !body.startsWith("|");
  if (!enabled) body = body.slice(1);
  const words = body.split(/\s+/);
  const type = (words.shift() ?? "").toLowerCase() as FwRule["type"];
  const r: FwRule = {
    file,
    line,
    enabled,
    type,
    action: "",
    macro: null,
    iface: null,
    source: null,
    dest: null,
    proto: null,
    dport: null,
    sport: null,
    icmpType: null,
    log: null,
    comment,
  };
  const action = words.shift() ?? "";
  const m = /^(\w+)\((\w+)\)$/.exec(action);
  if (type === "group") r.action = action.toLowerCase();
  else if (m) {
    r.macro = m[1] as string;
    r.action = (m[2] as string).toUpperCase();
  } else r.action = action.toUpperCase();
  for (let i = 0; i < words.length; i += 2) {
    const opt = (words[i] as string).replace(/^-+/, "");
    const v = words[i + 1] ?? "";
    if (opt === "i") r.iface = v;
    else if (opt === "source") r.source = v;
    else if (opt === "dest") r.dest = v;
    else if (opt === "p" || opt === "proto") r.proto = v.toLowerCase();
    else if (opt === "dport") r.dport = v;
    else if (opt === "sport") r.sport = v;
    else throw new Error(`build.rule: unknown option ${opt}`);
  }
  return r;
}

export interface FwSpec {
  rules?: string[];
  options?: Record<string, string>;
  aliases?: Record<string, string>;
  ipsets?: Record<string, string[]>;
  groups?: Record<string, string[]>;
  /** Line of the first rule; each next rule is one line further. */
  firstLine?: number;
}

export function fw(kind: FwKind, file: string, spec: FwSpec = {}): FwFile {
  let line = spec.firstLine ?? 4;
  const rules = (spec.rules ?? []).map((t) => rule(t, file, line++));
  const aliases: FwFile["aliases"] = {};
  for (const [name, cidr] of Object.entries(spec.aliases ?? {})) {
    aliases[name.toLowerCase()] = { name, cidr, line: line++ };
  }
  const ipsets: FwFile["ipsets"] = {};
  for (const [name, entries] of Object.entries(spec.ipsets ?? {})) {
    const setLine = line++;
    ipsets[name.toLowerCase()] = {
      name,
      line: setLine,
      entries: entries.map((e) => ({
        cidr: e.replace(/^!/, ""),
        nomatch: e.startsWith("!"),
        line: line++,
      })),
    };
  }
  const groups: FwFile["groups"] = {};
  for (const [name, lines] of Object.entries(spec.groups ?? {})) {
    const g: FwGroup = { name, line: line++, rules: [] };
    g.rules = lines.map((t) => rule(t, file, line++));
    groups[name.toLowerCase()] = g;
  }
  return {
    file,
    kind,
    options: spec.options ?? {},
    rules,
    aliases,
    ipsets,
    groups,
    diagnostics: [],
  };
}

export function nic(
  index: number,
  ip: string | null,
  firewall = false,
  bridge = "vmbr1",
  mac: string | null = null,
): GuestNic {
  return { index, bridge, firewall, ip, mac };
}

export function conf(
  vmid: number,
  kind: GuestKind,
  nics: GuestNic[],
  name: string | null = `guest${vmid}`,
): GuestConf {
  const dir = kind === "qemu" ? "qemu-server" : "lxc";
  return {
    vmid,
    kind,
    file: `nodes/pve1/${dir}/${vmid}.conf`,
    name,
    nics,
    hookscript: null,
    agent: false,
    diagnostics: [],
  };
}

export interface GuestSpec {
  kind?: GuestKind;
  nics?: GuestNic[];
  state?: RunState;
  fw?: FwSpec | null;
}

export interface InputSpec {
  config?: Partial<Config>;
  publicAddress?: string | null;
  hostPorts?: HostPorts;
  cluster?: FwSpec | null;
  host?: FwSpec | null;
  guests?: Record<number, GuestSpec>;
  /** What the node learned about addresses (default: nothing). */
  addresses?: Partial<AddressFacts>;
}

/** A node "pve1" with public address 203.0.113.10 unless told otherwise. */
export function input(spec: InputSpec = {}): NodeInput {
  const guests: NodeInput["guests"] = {};
  for (const [id, g] of Object.entries(spec.guests ?? {})) {
    const vmid = Number(id);
    guests[vmid] = {
      conf: conf(vmid, g.kind ?? "lxc", g.nics ?? [nic(0, `10.10.10.${vmid % 250}/24`)]),
      fw: g.fw === null ? null : fw("guest", `firewall/${vmid}.fw`, g.fw ?? {}),
      state: g.state ?? "running",
    };
  }
  return {
    node: "pve1",
    config: { ...DEFAULTS, ...spec.config },
    publicAddress: spec.publicAddress === undefined ? "203.0.113.10" : spec.publicAddress,
    hostPorts: spec.hostPorts ?? { any: [], at: {} },
    cluster: spec.cluster ? fw("cluster", "firewall/cluster.fw", spec.cluster) : null,
    host: spec.host ? fw("host", "nodes/pve1/host.fw", spec.host) : null,
    guests,
    addresses: { ...emptyFacts(), ...spec.addresses },
    diagnostics: [],
  };
}

/** One guest 107 (LXC, 10.10.10.107/24, running) with these rules. */
export function guest107(
  rules: string[],
  extra: Omit<GuestSpec, "fw"> & { fw?: Omit<FwSpec, "rules"> } = {},
): NodeInput {
  return input({
    guests: { 107: { nics: [nic(0, "10.10.10.107/24")], ...extra, fw: { ...extra.fw, rules } } },
  });
}
