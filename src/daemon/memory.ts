import { getHeapCodeStatistics, getHeapSpaceStatistics } from "node:v8";

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
