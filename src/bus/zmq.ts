// zeromq, loaded when a socket is first opened rather than when the bus modules are: loading it
// maps the native addon (and in the single executable may first write it to disk), a cost every
// command that never opens a socket would otherwise pay at start.
type Zmq = typeof import("zeromq");

let loading: Promise<Zmq> | undefined;

export function loadZmq(): Promise<Zmq> {
  loading ??= import("zeromq");
  return loading;
}

/** A signal that arrives while zeromq waits (a profiler's SIGPROF, say) ends the wait with
 *  EINTR: nothing was sent or received, so the same step is taken again. The caller's own
 *  deadline still bounds it; the count only stops a signal storm from spinning here. */
const EINTR_RETRIES = 20;

/** The errno name zeromq gives a failed send or receive ("EAGAIN", "EINTR"), if any. */
export function zmqErrorCode(err: unknown): unknown {
  return typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
}

export async function retryInterrupted<T>(step: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (zmqErrorCode(err) !== "EINTR" || attempt >= EINTR_RETRIES) throw err;
    }
  }
}
