// A guest's Proxmox config (`qemu-server/<vmid>.conf`, `lxc/<vmid>.conf`), current section only.
// pve-nat needs little of it: the name, the NICs (bridge, firewall flag, IPv4) and the
// hookscript. Everything else is ignored; nothing here ever throws.

import type { Diagnostic, GuestConf, GuestKind, GuestNic } from "../model.js";

/** `key: value` as qemu-server / pve-container write it (lxc.* raw keys carry dots). */
const LINE = /^([a-z][a-z0-9_.-]*)\s*:\s*(.*?)\s*$/i;
const NET = /^net(\d+)$/;
const IPCONFIG = /^ipconfig(\d+)$/;

/** A Proxmox property string: `a=1,b=2` (qemu NICs also start with `virtio=MAC` or `virtio`). */
function propertyString(value: string): Map<string, string> {
  const props = new Map<string, string>();
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) props.set(part.trim().toLowerCase(), "");
    else props.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return props;
}

/** pve's boolean property values. */
function truthy(v: string | undefined): boolean {
  return v !== undefined && ["1", "on", "yes", "true"].includes(v.toLowerCase());
}

const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

/** qemu: `virtio=MAC` (any model key holding a MAC) or `macaddr=`; LXC: `hwaddr=`. */
function nicMac(props: Map<string, string>, kind: GuestKind): string | null {
  const direct = props.get(kind === "lxc" ? "hwaddr" : "macaddr");
  if (direct && MAC.test(direct)) return direct.toLowerCase();
  if (kind === "lxc") return null;
  for (const v of props.values()) if (MAC.test(v)) return v.toLowerCase();
  return null;
}

/** qemu-server's `agent: [enabled=]1[,fstrim_cloned_disks=…,type=…]`. */
function agentEnabled(value: string): boolean {
  const props = propertyString(value);
  const first = value.split(",")[0]?.trim() ?? "";
  if (!first.includes("=")) return truthy(first);
  return truthy(props.get("enabled"));
}

export function parseGuestConf(
  text: string,
  vmid: number,
  kind: GuestKind,
  file: string,
): GuestConf {
  const diagnostics: Diagnostic[] = [];
  const nets = new Map<number, Map<string, string>>();
  const ipconfigs = new Map<number, Map<string, string>>();
  let name: string | null = null;
  let hookscript: string | null = null;
  let agent = false;

  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] ?? "").trim();
    // The first section header ends the current config: snapshots, [PENDING], [special:…].
    if (raw.startsWith("[")) break;
    // '#' lines are the guest's description.
    if (raw === "" || raw.startsWith("#")) continue;
    const m = LINE.exec(raw);
    if (!m) {
      diagnostics.push({
        file,
        line: i + 1,
        severity: "warning",
        message: `cannot parse guest config line "${raw}" (ignored)`,
      });
      continue;
    }
    const key = (m[1] ?? "").toLowerCase();
    const value = m[2] ?? "";
    const net = NET.exec(key);
    const ipc = IPCONFIG.exec(key);
    if (net) nets.set(Number(net[1]), propertyString(value));
    else if (ipc && kind === "qemu") ipconfigs.set(Number(ipc[1]), propertyString(value));
    else if (key === (kind === "qemu" ? "name" : "hostname")) name = value || null;
    else if (key === "hookscript") hookscript = value || null;
    else if (key === "agent" && kind === "qemu") agent = agentEnabled(value);
  }

  const nics: GuestNic[] = [...nets.keys()]
    .sort((a, b) => a - b)
    .map((index) => {
      const props = nets.get(index) ?? new Map<string, string>();
      const ipSource = kind === "lxc" ? props : ipconfigs.get(index);
      return {
        index,
        bridge: props.get("bridge") || null,
        firewall: truthy(props.get("firewall")),
        ip: ipSource?.get("ip") || null,
        mac: nicMac(props, kind),
        gw: ipSource?.get("gw") || null,
      };
    });

  return { vmid, kind, file, name, nics, hookscript, agent, diagnostics };
}
