// Time is injected so grace periods, retries and polling can be tested without waiting.

export interface Clock {
  /** Monotonic milliseconds (durations). */
  now(): number;
  /** Wall-clock time (event timestamps, status). */
  wall(): Date;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  wall: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Runs `task` every `intervalMs`, re-armed after each run so a slow run never overlaps the
 *  next one. `task` must not throw (callers log their own failures). */
export function every(
  clock: Clock,
  intervalMs: number,
  task: () => Promise<unknown>,
): { start(): void; stop(): void } {
  let timer: unknown = null;
  let stopped = true;
  function arm(): void {
    if (stopped) return;
    timer = clock.setTimeout(() => {
      timer = null;
      void task().finally(arm);
    }, intervalMs);
  }
  return {
    start() {
      if (!stopped) return;
      stopped = false;
      arm();
    },
    stop() {
      stopped = true;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
    },
  };
}
