import { getHeapCodeStatistics, getHeapSpaceStatistics } from "node:v8";
import type { Logger } from "pino";
import type { Clock } from "./clock.js";

// What the daemon's resident memory is made of (issue 10), for `status` / `ping`: V8's heap
// (used of committed), memory outside it (Buffers, the zeromq addon's allocations) and compiled
// code. Bytes. The rest of RSS is the executable's own pages (file-backed, shared with every
// hook process) and the allocator's.
export interface MemoryReport {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** V8 code space committed, plus bytecode and code metadata in use. */
  code: number;
}

export function memoryReport(): MemoryReport {
  const m = process.memoryUsage();
  const codeSpace = getHeapSpaceStatistics().find((s) => s.space_name === "code_space");
  const c = getHeapCodeStatistics();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    code: (codeSpace?.physical_space_size ?? 0) + c.bytecode_and_metadata_size,
  };
}

/** Quiet time after the last cycle before the executable's pages are given back: a burst of
 *  events is one stretch of work, trimmed once at its end. */
export const TRIM_QUIET_MS = 5000;

/** Gives back the executable's resident pages once the daemon is quiet (issue 10; the why is
 *  in src/native/pagedrop.c, part of pve-nat's own addon): start-up and every burst of work
 *  touch tens of MB of V8's and Node's code that an idle poll never runs again. `touch()` after each cycle; the drop runs
 *  TRIM_QUIET_MS after the last one. Costs a read of /proc/self/smaps and, afterwards, the
 *  minor faults that map the idle working set back in (a few ms). Measured and not taken:
 *  dropping also while cycles keep coming (at most once a second): the code a burst runs maps
 *  back in within a second (file pages 23 → 40 MB), so the peak was unchanged (126.5 MB at
 *  1000 guests against 126-132) and the burst of 1000 starts took 4.7 s instead of 1.6-2.6. */
export function createTrimmer(deps: {
  drop: () => number;
  clock: Clock;
  log: Logger;
  quietMs?: number;
}): { touch(): void; stop(): void } {
  let timer: unknown = null;
  const run = () => {
    timer = null;
    const t0 = deps.clock.now();
    const before = process.memoryUsage.rss();
    const released = deps.drop();
    deps.log.debug(
      {
        releasedMb: Math.round(released / 1048576),
        rssMb: Math.round(process.memoryUsage.rss() / 1048576),
        beforeMb: Math.round(before / 1048576),
        ms: Math.round((deps.clock.now() - t0) * 10) / 10,
      },
      released < 0 ? "page trim: /proc/self/smaps unreadable" : "page trim",
    );
  };
  return {
    touch() {
      if (timer !== null) deps.clock.clearTimeout(timer);
      timer = deps.clock.setTimeout(run, deps.quietMs ?? TRIM_QUIET_MS);
    },
    stop() {
      if (timer !== null) deps.clock.clearTimeout(timer);
      timer = null;
    },
  };
}
