// Hookscript volumes and the --chain mapping (SPEC §6 attach). Pure.
//
// A chained guest keeps its previous hookscript in /etc/pve/pve-nat/chain/<vmid> (pmxcfs, so
// every node sees it after a migration): line 1 the volume id, line 2 the script's file. The
// file is plain lines because the snippet that reads it is POSIX sh (no jq on a PVE host).

export const HOOK_SNIPPET = "pve-nat-hook";
export const HOOK_VOLID = `local:snippets/${HOOK_SNIPPET}`;
export const CHAIN_DIR = "/etc/pve/pve-nat/chain";
export const STORAGE_CFG = "/etc/pve/storage.cfg";

export function chainFile(vmid: number): string {
  return `${CHAIN_DIR}/${vmid}`;
}

export interface ChainEntry {
  /** The previous hookscript, e.g. "local:snippets/backup-hook.pl". */
  volid: string;
  /** Its file, e.g. "/var/lib/vz/snippets/backup-hook.pl". */
  path: string;
}

// pve's volume ids: "<storage>:snippets/<name>"; a name with '/' or whitespace is not one we
// can pass through a line-based file or a shell word safely.
const STORAGE_ID_PATTERN = "[a-z][a-z0-9\\-_.]*[a-z0-9]";
const STORAGE_ID = new RegExp(`^${STORAGE_ID_PATTERN}$`, "i");
const SNIPPET_VOLID = new RegExp(`^(${STORAGE_ID_PATTERN}):snippets/([^/\\s]+)$`, "i");

/** Any storage's copy of our snippet counts as attached. */
export function isPveNatHook(volid: string): boolean {
  const m = SNIPPET_VOLID.exec(volid);
  return m !== null && m[2] === HOOK_SNIPPET;
}

export function formatChain(entry: ChainEntry): string {
  if (/[\r\n]/.test(entry.volid + entry.path)) throw new Error("chain entry must be single-line");
  return `${entry.volid}\n${entry.path}\n`;
}

export function parseChain(text: string): ChainEntry | null {
  const [volid = "", path = ""] = text.split("\n").map((l) => l.trim());
  return volid !== "" && path.startsWith("/") ? { volid, path } : null;
}

export interface Storage {
  type: string;
  id: string;
  path: string | null;
  content: string[];
}

/** PVE's built-in default for the `local` storage when storage.cfg does not define it. */
const LOCAL_DEFAULT: Storage = {
  type: "dir",
  id: "local",
  path: "/var/lib/vz",
  content: ["iso", "vztmpl", "backup"],
};

/** /etc/pve/storage.cfg: "<type>: <id>" headers, then indented "key value" lines. */
export function parseStorageCfg(text: string | null): Map<string, Storage> {
  const storages = new Map<string, Storage>();
  let current: Storage | null = null;
  for (const raw of (text ?? "").split("\n")) {
    if (raw.trim() === "" || raw.trim().startsWith("#")) continue;
    const header = /^([a-z0-9]+):\s*(\S+)\s*$/i.exec(raw);
    if (header && !/^\s/.test(raw)) {
      current = { type: header[1] as string, id: header[2] as string, path: null, content: [] };
      if (STORAGE_ID.test(current.id)) storages.set(current.id, current);
      continue;
    }
    const prop = /^\s+(\S+)(?:\s+(.*))?$/.exec(raw);
    if (!prop || !current) continue;
    const value = (prop[2] ?? "").trim();
    if (prop[1] === "path") current.path = value;
    if (prop[1] === "content")
      current.content = value
        .split(",")
        .map((c) => c.trim())
        .filter(Boolean);
  }
  if (!storages.has("local")) storages.set("local", { ...LOCAL_DEFAULT });
  return storages;
}

/** The file of a snippet volume on a path-based storage ("local:snippets/x" →
 *  "/var/lib/vz/snippets/x"), or an explanation why there is none. */
export function snippetPath(
  volid: string,
  storages: Map<string, Storage>,
): string | { error: string } {
  const m = SNIPPET_VOLID.exec(volid);
  if (!m) return { error: `${volid} is not a snippets volume (<storage>:snippets/<name>)` };
  const storage = storages.get(m[1] as string);
  if (!storage) return { error: `storage ${m[1]} is not defined in ${STORAGE_CFG}` };
  if (!storage.path) return { error: `storage ${m[1]} has no directory path` };
  return `${storage.path.replace(/\/+$/, "")}/snippets/${m[2]}`;
}

/** What to tell the admin when Proxmox refuses our snippet volume. */
export function snippetsHelp(storages: Map<string, Storage>, volid = HOOK_VOLID): string {
  const id = volid.split(":")[0] ?? "local";
  const storage = storages.get(id);
  const content = [...(storage?.content ?? []).filter((c) => c !== "snippets"), "snippets"].join(
    ",",
  );
  const file = snippetPath(volid, storages);
  const where =
    typeof file === "string"
      ? ` and ${file} must exist and be executable (the package installs it)`
      : "";
  return (
    `storage '${id}' must allow snippets${where}. Enable them with: pvesm set ${id} --content ${content}` +
    " (this keeps the content types the storage already has)"
  );
}

/** Proxmox's wording when a hookscript volume is refused (pve-guest-common check_hookscript,
 *  pve-storage content checks). */
export function isSnippetsRefusal(output: string): boolean {
  return (
    /snippets/i.test(output) &&
    /(content|not in the snippets directory|does not exist|not executable)/i.test(output)
  );
}
