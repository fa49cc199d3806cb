// The CLI's side of the bus: one bounded request/reply, or a stream of events.
import { existsSync } from "node:fs";
import { BusError } from "../errors.js";
import {
  type BusEvent,
  isProtocolError,
  parseEvent,
  parseReply,
  type Reply,
  type Request,
  serialize,
} from "./protocol.js";
import { loadZmq, retryInterrupted, zmqErrorCode } from "./zmq.js";

/** Nothing listens on the socket: no daemon, or one that died and left its socket file. */
export class DaemonNotRunning extends BusError {
  constructor(readonly socket: string) {
    super("daemon not running");
  }
}

/** The daemon took longer than the caller's bound. */
export class BusTimeout extends BusError {
  constructor(readonly timeoutMs: number) {
    super(`no answer from the daemon within ${timeoutMs} ms`);
  }
}

function isTimeout(err: unknown): boolean {
  return zmqErrorCode(err) === "EAGAIN";
}

/** Every Observer this process made, never freed: zeromq names an observer's monitor endpoint
 *  after the address of its C++ object (`inproc://zmq.monitor.<this>`), and libzmq unbinds
 *  that endpoint some time after the socket closes. A new Observer allocated where a collected
 *  one lived then fails with "Address already in use". Only short-lived commands make requests
 *  (hook, status, apply, metrics, diagnose: a handful each), so keeping them costs nothing. */
const observers: unknown[] = [];

/** Sends one request and waits at most `timeoutMs` (all included) for its reply.
 *  Throws DaemonNotRunning / BusTimeout (both BusError), or BusError for a bad reply. */
export async function request(socket: string, req: Request, timeoutMs: number): Promise<Reply> {
  // process.hrtime, not performance.now(): the global `performance` loads perf_hooks (≈ 1.5 ms
  // of the hook's start).
  const started = process.hrtime.bigint();
  // The daemon removes its socket file when it stops: no file, no daemon, and zeromq (its
  // addon) need not be loaded at all.
  if (!existsSync(socket)) throw new DaemonNotRunning(socket);
  const zmq = await loadZmq();
  const left = Math.max(1, Math.round(timeoutMs - Number(process.hrtime.bigint() - started) / 1e6));
  const dealer = new zmq.Dealer({ linger: 0, sendTimeout: left, receiveTimeout: left });
  // A file nobody listens on (left by a daemon that was killed) makes zeromq retry its connect
  // for ever. Its first retry is when we look closer, with a plain connect (probe.ts), which
  // also tells a refused connect from a daemon too busy to accept one. Only then: node:net
  // costs the hook ≈ 5 ms of start-up, a price every guest start paid when it probed first.
  const observer = new zmq.Observer(dealer);
  observers.push(observer);
  let timer: NodeJS.Timeout | undefined;
  // A hard stop on top of zeromq's own timeouts: closing the socket ends any wait.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BusTimeout(timeoutMs)), left);
  });
  try {
    const stale = (async (): Promise<never> => {
      for await (const event of observer) {
        if (event.type !== "connect:retry") continue;
        const { probeSocket } = await import("./probe.js");
        if (!(await probeSocket(socket, Math.min(250, left)))) throw new DaemonNotRunning(socket);
        break; // Someone listens, only slowly: the exchange or the deadline decides.
      }
      return new Promise<never>(() => {});
    })();
    dealer.connect(`ipc://${socket}`);
    const exchange = (async () => {
      // Empty delimiter first, as a REQ socket would send: the daemon replies with it.
      const message = [Buffer.alloc(0), Buffer.from(serialize(req))];
      await retryInterrupted(() => dealer.send(message));
      const frames = await retryInterrupted(() => dealer.receive());
      const body = frames[0]?.length === 0 ? frames.slice(1) : frames;
      if (body.length !== 1) throw new BusError(`bad reply from daemon: ${body.length} frames`);
      const reply = parseReply(body[0] as Buffer);
      if (isProtocolError(reply)) throw new BusError(`bad reply from daemon: ${reply.error}`);
      return reply;
    })();
    // Once another wins, closing the sockets rejects the rest: nobody listens then.
    exchange.catch(() => {});
    stale.catch(() => {});
    return await Promise.race([exchange, stale, deadline]).catch((err: unknown) => {
      throw isTimeout(err) ? new BusTimeout(timeoutMs) : err;
    });
  } finally {
    clearTimeout(timer);
    observer.close();
    dealer.close();
  }
}

/** Events as the daemon publishes them; malformed ones are skipped. Waits for a daemon that
 *  is not (yet) running. Breaking out of the loop closes the socket. */
export async function* subscribe(eventsSocket: string): AsyncGenerator<BusEvent> {
  const zmq = await loadZmq();
  const sub = new zmq.Subscriber({ linger: 0 });
  try {
    sub.connect(`ipc://${eventsSocket}`);
    sub.subscribe();
    for await (const frames of sub) {
      if (frames.length !== 1) continue;
      const event = parseEvent(frames[0] as Buffer);
      if (!("error" in event)) yield event;
    }
  } finally {
    sub.close();
  }
}
