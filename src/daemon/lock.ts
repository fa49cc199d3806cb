import { mkdir, open, readFile, stat, unlink } from "node:fs/promises";
import path from "node:path";

// Without a daemon, `apply` and `flush` write iptables themselves; this lock keeps two such
// commands (or one and a starting daemon's reconcile) from interleaving. Exclusive create of a
// pid file; a file whose pid is gone is stale and taken over.

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Held by a process that is gone, or left empty by one that died right after creating it. */
async function stale(file: string, text: string): Promise<boolean> {
  if (text.trim() === "") {
    const st = await stat(file).catch(() => null);
    return st !== null && Date.now() - st.mtimeMs > 5000;
  }
  const pid = Number(text.trim());
  return !Number.isInteger(pid) || pid <= 0 || !alive(pid);
}

export class LockBusy extends Error {
  override name = "LockBusy";
}

/** Takes the lock, waiting up to timeoutMs; returns its release function. */
export async function acquireLock(file: string, timeoutMs = 10_000): Promise<() => Promise<void>> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(file, "wx", 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        // Only remove it while it is still ours.
        const text = await readFile(file, "utf8").catch(() => "");
        if (text.trim() === String(process.pid)) await unlink(file).catch(() => {});
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const text = await readFile(file, "utf8").catch(() => null);
    if (text !== null && (await stale(file, text))) {
      await unlink(file).catch(() => {});
      continue;
    }
    if (Date.now() >= deadline) {
      throw new LockBusy(`${file} is held by process ${text?.trim() ?? "?"}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
