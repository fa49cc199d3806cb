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
