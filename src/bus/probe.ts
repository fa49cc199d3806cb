// Is anything listening on a unix socket file? A refused connect means a stale file left by a
// daemon that died: the hook can say "daemon not running" at once instead of waiting.
import net from "node:net";

/** true when a listener accepts a connection on `file`, false when the file is missing or
 *  nobody listens. Undecided within `timeoutMs` counts as listening (a busy daemon). */
export function probeSocket(file: string, timeoutMs = 250): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect({ path: file });
    const done = (listening: boolean) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(listening);
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    conn.once("connect", () => done(true));
    conn.once("error", () => done(false));
  });
}
