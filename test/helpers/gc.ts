import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// A full garbage collection on demand, for tests that check what a cache keeps alive
// (issue 10). `--expose-gc` set at run time reaches only contexts made after it: a new one
// hands out its `gc`.
let exposed: (() => void) | null = null;

export function gc(): void {
  if (exposed === null) {
    setFlagsFromString("--expose-gc");
    exposed = runInNewContext("gc") as () => void;
  }
  exposed();
}

/** A collection after the current job: a WeakRef keeps its target until the job that made or
 *  read it ends, so a test asking whether a WeakRef's target went waits for the next turn. */
export async function gcAfterJob(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  gc();
}
