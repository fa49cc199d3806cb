// Proxmox SDN's config (/etc/pve/sdn/{zones,vnets,subnets}.cfg), in PVE's section-config format:
//
//   simple: zone1          <type>: <id>
//           dhcp dnsmasq   <tab or spaces><key> <value>
//                          (a blank line ends the section)
//
// pve-nat needs the zones (their DHCP plugin), which zone each VNet is in, and the subnets
// (CIDR, gateway, `snat 1`). Pure; a line it cannot read is a warning naming file and line.

import type { Diagnostic, SdnConfig, SdnSubnet } from "../model.js";
import { isIPv4 } from "./address.js";

export interface Section {
  type: string;
  id: string;
  line: number;
  props: Record<string, string>;
}

const HEADER = /^([a-z][a-z0-9_-]*):\s*(\S+)\s*$/i;
const PROP = /^\s+([a-z][a-z0-9_-]*)(?:\s+(.*?))?\s*$/i;

export function parseSections(text: string, file: string, diags: Diagnostic[]): Section[] {
  const out: Section[] = [];
  let cur: Section | null = null;
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? "";
    if (raw.trim() === "") {
      cur = null;
      continue;
    }
    if (raw.trimStart().startsWith("#")) continue;
    const h = HEADER.exec(raw);
    if (h && !/^\s/.test(raw)) {
      cur = { type: (h[1] as string).toLowerCase(), id: h[2] as string, line: i + 1, props: {} };
      out.push(cur);
      continue;
    }
    const p = PROP.exec(raw);
    if (p && cur) {
      cur.props[(p[1] as string).toLowerCase()] = p[2] ?? "";
      continue;
    }
    diags.push({
      file,
      line: i + 1,
      severity: "warning",
      message: `cannot parse SDN config line "${raw.trim()}" (ignored)`,
    });
  }
  return out;
}

/** subnets.cfg names a subnet `<zone>-<address>-<prefix>`. */
const SUBNET_ID = /^(.+)-(\d+\.\d+\.\d+\.\d+)-(\d{1,2})$/;

export interface SdnTexts {
  zones: string | null;
  vnets: string | null;
  subnets: string | null;
}

export const SDN_FILES = {
  zones: "sdn/zones.cfg",
  vnets: "sdn/vnets.cfg",
  subnets: "sdn/subnets.cfg",
} as const;

export function parseSdn(texts: SdnTexts): { sdn: SdnConfig; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const sdn: SdnConfig = { zones: {}, vnets: {}, subnets: [] };
  for (const s of parseSections(texts.zones ?? "", SDN_FILES.zones, diagnostics)) {
    sdn.zones[s.id] = { type: s.type, dhcp: s.props.dhcp || null };
  }
  for (const s of parseSections(texts.vnets ?? "", SDN_FILES.vnets, diagnostics)) {
    sdn.vnets[s.id] = { zone: s.props.zone || null };
  }
  for (const s of parseSections(texts.subnets ?? "", SDN_FILES.subnets, diagnostics)) {
    const m = SUBNET_ID.exec(s.id);
    if (s.type !== "subnet" || !m || !isIPv4(m[2] as string) || Number(m[3]) > 32) {
      // IPv6 subnets are named <zone>-<v6>-<prefix>: not an error, and nothing pve-nat NATs.
      if (!s.id.includes(":")) {
        diagnostics.push({
          file: SDN_FILES.subnets,
          line: s.line,
          severity: "warning",
          message: `subnet "${s.id}" is not <zone>-<IPv4>-<prefix>: ignored`,
        });
      }
      continue;
    }
    const gateway = s.props.gateway && isIPv4(s.props.gateway) ? s.props.gateway : null;
    const subnet: SdnSubnet = {
      id: s.id,
      zone: m[1] as string,
      vnet: s.props.vnet || null,
      cidr: `${m[2]}/${m[3]}`,
      gateway,
      snat: s.props.snat === "1",
      line: s.line,
    };
    sdn.subnets.push(subnet);
  }
  diagnostics.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line));
  return { sdn, diagnostics };
}
