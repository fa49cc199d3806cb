// The I/O half of cluster/presence.ts: pmxcfs's member list, every node's presence file, the
// attached guests of every node, and the atomic write of this node's presence file.
import { readdir, readFile } from "node:fs/promises";
import { replaceInExistingDir } from "../atomicfile.js";
import type { Context } from "../context.js";
import { NODE_NAME } from "../names.js";
import { PVE_DIR } from "../paths.js";
import { parseGuestConf } from "../pve/guestconf.js";
import { isPveNatHook } from "../pve/hookscript.js";
import { confVmid } from "../pve/nodefiles.js";
import {
  type ClusterView,
  type Presence,
  parseMembers,
  parsePresence,
  presenceRel,
  presenceText,
} from "./presence.js";

type Paths = Pick<Context, "path">;

async function text(file: string): Promise<string | null> {
  return readFile(file, "utf8").catch(() => null);
}

async function nodeDirs(ctx: Paths): Promise<string[]> {
  const names = await readdir(ctx.path(`${PVE_DIR}/nodes`)).catch(() => [] as string[]);
  return names.filter((n) => NODE_NAME.test(n)).sort();
}

export async function readClusterView(ctx: Paths, self: string): Promise<ClusterView> {
  const membersText = await text(ctx.path(`${PVE_DIR}/.members`));
  const fromMembers = membersText === null ? null : parseMembers(membersText);
  const dirs = await nodeDirs(ctx);
  const members = fromMembers ?? dirs;
  const presence = new Map<string, Presence | { error: string }>();
  // Every directory, members or not: `status --cluster` also shows a node removed from the
  // cluster whose directory pmxcfs still keeps.
  for (const node of [...new Set([...members, ...dirs])].sort()) {
    const t = await text(ctx.path(`${PVE_DIR}/${presenceRel(node)}`));
    if (t !== null) presence.set(node, parsePresence(t, node));
  }
  return {
    self,
    members,
    membersFrom: fromMembers ? ".members" : "nodes/",
    presence,
  };
}

/** Guests of every node whose hookscript is pve-nat's. */
export async function attachedGuests(ctx: Paths): Promise<Array<{ vmid: number; node: string }>> {
  const out: Array<{ vmid: number; node: string }> = [];
  for (const node of await nodeDirs(ctx)) {
    for (const [dir, kind] of [
      ["qemu-server", "qemu"],
      ["lxc", "lxc"],
    ] as const) {
      const rel = `nodes/${node}/${dir}`;
      for (const name of await readdir(ctx.path(`${PVE_DIR}/${rel}`)).catch(() => [] as string[])) {
        const vmid = confVmid(name);
        if (vmid === null) continue;
        const t = await text(ctx.path(`${PVE_DIR}/${rel}/${name}`));
        if (t === null) continue;
        const hook = parseGuestConf(t, vmid, kind, `${rel}/${name}`).hookscript;
        if (hook !== null && isPveNatHook(hook)) out.push({ vmid, node });
      }
    }
  }
  return out.sort((a, b) => a.vmid - b.vmid);
}

/** Writes nodes/<node>/pve-nat.json atomically (a temporary file renamed into place; pmxcfs
 *  supports rename, and pve-ha-lrm writes nodes/<node>/lrm_status the same way). Only into an
 *  existing node directory, which pmxcfs always has: false (nothing written) where there is
 *  none — not a Proxmox node, or /etc/pve not mounted, where a file would land on the disk
 *  under the mount point. */
export async function writePresence(ctx: Paths, p: Presence): Promise<boolean> {
  const file = ctx.path(`${PVE_DIR}/${presenceRel(p.node)}`);
  return replaceInExistingDir(file, presenceText(p), `${file}.tmp.${process.pid}`);
}
