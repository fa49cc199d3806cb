import { rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

// node_exporter's textfile collector reads every `*.prom` file of its directory at each scrape;
// a half-written file would be a scrape error, so the text goes to a temporary name (not
// ending in .prom, so never read) and is renamed over the target, which is atomic.

/** Whether `file`'s directory exists (node_exporter installed): callers skip building the text
 *  when it does not, since that costs an `iptables-save -c` of the whole table. */
export async function textfileDirExists(file: string): Promise<boolean> {
  const st = await stat(path.dirname(file)).catch(() => null);
  return st?.isDirectory() === true;
}

/** Writes `text` to `file` atomically. Returns false (and writes nothing) when the file's
 *  directory does not exist: node_exporter is not installed there, and pve-nat must not
 *  create its directories. Throws on other I/O errors. */
export async function writeTextfile(file: string, text: string): Promise<boolean> {
  const dir = path.dirname(file);
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) return false;
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return true;
}
