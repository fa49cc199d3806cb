// pmxcfs's guest list, /etc/pve/.vmlist (proxmox/pve-cluster src/pmxcfs/status.c,
// cfs_create_vmlist_msg): {"version": V, "ids": {"107": {"node": "pve1", "type": "qemu",
// "version": M}}}. pmxcfs bumps V and gives the guest a new M on every write, rename or
// removal of a guest config anywhere in the cluster (memdb.c calls vmlist_register_vm /
// vmlist_delete_vm), so an unchanged V means no guest config changed; PVE::Cluster caches
// guest configs on M the same way (cfs_file_version). Nothing counts firewall/*.fw changes.
// Pure: text in, values out.

import type { GuestKind } from "../model.js";
import { parseVmid } from "../names.js";

export interface VmListEntry {
  node: string;
  kind: GuestKind;
  version: number;
}

export interface VmList {
  version: number;
  guests: Map<number, VmListEntry>;
}

/** The leading `"version": V` alone (pmxcfs prints it first), without parsing the list. */
export function vmlistVersion(text: string): number | null {
  const m = /^\s*\{\s*"version"\s*:\s*(\d+)\s*[,}]/.exec(text.slice(0, 64));
  return m ? Number(m[1]) : null;
}

/** The whole list, or null when the text is not pmxcfs's shape (then poll as without it).
 *  Guests of other types (openvz) are left out. */
export function parseVmlist(text: string): VmList | null {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof obj !== "object" || obj === null) return null;
  const { version, ids } = obj as { version?: unknown; ids?: unknown };
  if (typeof version !== "number" || !Number.isInteger(version)) return null;
  const guests = new Map<number, VmListEntry>();
  if (ids !== undefined) {
    if (typeof ids !== "object" || ids === null) return null;
    for (const [key, value] of Object.entries(ids)) {
      if (typeof value !== "object" || value === null) return null;
      const vmid = parseVmid(key);
      if (vmid === null) continue; // "0" (pve-firewall skips it too) or out of our range
      const { node, type, version: v } = value as Record<string, unknown>;
      if (typeof node !== "string" || typeof v !== "number") return null;
      if (type !== "qemu" && type !== "lxc") continue;
      guests.set(vmid, { node, kind: type, version: v });
    }
  }
  return { version, guests };
}
