// The floor's spawn: pve-nat's own addon (src/native/spawn.c, compiled as the package build
// compiles it), the posix_spawn the daemon starts its restores with. A floor spawned with
// child_process would carry the fork() of this bench process (its page tables: ≈ 4–5 ms here),
// a cost that belongs to neither iptables nor the daemon, and at 10 guests the daemon's whole
// apply (6–8 ms) came out below such a floor (12 ms).
import type { Native } from "../../src/native/addon.js";
import { loadTestNative } from "../../test/helpers/native.js";
import type { Timed } from "./proc.js";

let native: Native | null = null;

function load(): Native {
  if (native) return native;
  const loaded = loadTestNative();
  loaded.dispose(); // mapped; the file is not needed any more
  native = loaded.native;
  return native;
}

/** argv with `input` on stdin, timed from the call to its result (exit, output read). */
export async function timedSpawn(argv: readonly string[], input: string): Promise<Timed> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("timedSpawn: empty argv");
  const spawn = load().spawn;
  const t0 = performance.now();
  const r = await spawn(cmd, args, input, 30_000, 16 * 1024 * 1024);
  const ms = performance.now() - t0;
  return {
    ms,
    code: r.error !== 0 ? null : r.code,
    stdout: r.stdout.toString(),
    stderr: r.stderr.toString(),
  };
}
