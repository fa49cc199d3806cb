// Names and per-file steps shared by the one-shot loader (node.ts) and the daemon's cached
// reader (cache.ts), so both turn the same bytes into the same values.

import { hostname } from "node:os";
import type { Config, Diagnostic, FwFile, FwKind, GuestKind } from "../model.js";
import { parseVmid } from "../names.js";
import { parseFwFile } from "./fwfile.js";
import { checkRefs } from "./refs.js";

export interface NodePaths {
  path(absolute: string): string;
  configPath: string;
  node?: string | undefined;
}

/** --node, then config `node`, then the short hostname. */
export function nodeName(paths: NodePaths, config: Config): string {
  return paths.node ?? config.node ?? (hostname().split(".")[0] || "localhost");
}

export function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

export function errText(err: unknown): string {
  return errCode(err) ?? (err instanceof Error ? err.message : String(err));
}

/** Relative-to-/etc/pve path names used in diagnostics and rule origins. */
export const rel = {
  cluster: "firewall/cluster.fw",
  host: (node: string) => `nodes/${node}/host.fw`,
  guestDir: (node: string, kind: GuestKind) =>
    `nodes/${node}/${kind === "qemu" ? "qemu-server" : "lxc"}`,
  guestFw: (vmid: number) => `firewall/${vmid}.fw`,
};

/** A guest config file name in nodes/<node>/{qemu-server,lxc}/ → its vmid, or null. The bus
 *  takes the same VMIDs, so a guest the loader sees can always be named in a request. */
export function confVmid(name: string): number | null {
  return name.endsWith(".conf") ? parseVmid(name.slice(0, -".conf".length)) : null;
}

/** The grammar step alone: what parseFwFile needs of cluster.fw depends on the kind. */
export function parseFw(text: string, file: string, kind: FwKind, cluster: FwFile | null): FwFile {
  // host.fw: pve-firewall's section rules there depend on what cluster.fw defines.
  return parseFwFile(text, file, kind, kind === "host" ? cluster : null);
}

/** Reference errors belong to the file they occur in, next to its parse errors. */
export function refsOf(fw: FwFile, kind: FwKind, cluster: FwFile | null): Diagnostic[] {
  return checkRefs(fw, kind === "cluster" ? fw : cluster);
}

export function internalError(file: string, err: unknown): Diagnostic {
  return { file, line: 0, severity: "error", message: `internal error: ${errText(err)}` };
}

/** Parses a .fw file and checks its references. The grammar promises not to throw; should a
 *  bug make it, that one file is reported and skipped rather than stopping every forward. */
export function loadFw(
  text: string | null,
  file: string,
  kind: FwKind,
  cluster: FwFile | null,
  diagnostics: Diagnostic[],
): FwFile | null {
  if (text === null) return null;
  try {
    const fw = parseFw(text, file, kind, cluster);
    fw.diagnostics.push(...refsOf(fw, kind, cluster));
    return fw;
  } catch (err) {
    diagnostics.push(internalError(file, err));
    return null;
  }
}
