import path from "node:path";
import { parentDirExists, replaceInExistingDir } from "../atomicfile.js";

// node_exporter's textfile collector reads every `*.prom` file of its directory at each scrape;
// a half-written file would be a scrape error, so the text goes to a temporary name (not
// ending in .prom, so never read) and is renamed over the target, which is atomic.

/** Whether `file`'s directory exists (node_exporter installed): callers skip building the text
 *  when it does not, since that costs an `iptables-save -c` of the whole table. */
export const textfileDirExists = parentDirExists;

/** Writes `text` to `file` atomically. Returns false (and writes nothing) when the file's
 *  directory does not exist: node_exporter is not installed there, and pve-nat must not
 *  create its directories. Throws on other I/O errors. */
export function writeTextfile(file: string, text: string): Promise<boolean> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  return replaceInExistingDir(file, text, tmp);
}
