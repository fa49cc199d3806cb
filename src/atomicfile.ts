import { rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

// Files pve-nat publishes for others to read (node_exporter's textfile, the pmxcfs presence
// file) are written to a temporary name and renamed into place, so a reader never sees half a
// file. Only into a directory that already exists: it belongs to whoever reads the file
// (node_exporter's package, pmxcfs), and a missing one means there is no reader.

/** Whether `file`'s directory exists. */
export async function parentDirExists(file: string): Promise<boolean> {
  const st = await stat(path.dirname(file)).catch(() => null);
  return st?.isDirectory() === true;
}

/** Writes `text` to `file` through `tmp` (same directory) and a rename. Returns false, writing
 *  nothing, when the directory does not exist; throws on other I/O errors. */
export async function replaceInExistingDir(
  file: string,
  text: string,
  tmp: string,
): Promise<boolean> {
  if (!(await parentDirExists(file))) return false;
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return true;
}
