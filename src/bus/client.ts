// The CLI's side of the bus: one bounded request/reply, or a stream of events.
import { BusError } from "../errors.js";
import { probeSocket } from "./probe.js";
import {
  type BusEvent,
  isProtocolError,
  parseEvent,
  parseReply,
  type Reply,
  type Request,
  serialize,
} from "./protocol.js";
import { loadZmq } from "./zmq.js";

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
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === "EAGAIN";
}

/** Sends one request and waits at most `timeoutMs` (all included) for its reply.
 *  Throws DaemonNotRunning / BusTimeout (both BusError), or BusError for a bad reply. */
export async function request(socket: string, req: Request, timeoutMs: number): Promise<Reply> {
  const started = performance.now();
  // Checked before zeromq is loaded: with no daemon the hook need not map the addon at all.
  if (!(await probeSocket(socket, Math.min(250, timeoutMs)))) throw new DaemonNotRunning(socket);
  const zmq = await loadZmq();
  const left = Math.max(1, Math.round(timeoutMs - (performance.now() - started)));
  const dealer = new zmq.Dealer({ linger: 0, sendTimeout: left, receiveTimeout: left });
  let timer: NodeJS.Timeout | undefined;
  // A hard stop on top of zeromq's own timeouts: closing the socket ends any wait.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BusTimeout(timeoutMs)), left);
  });
  try {
    dealer.connect(`ipc://${socket}`);
    const exchange = (async () => {
      // Empty delimiter first, as a REQ socket would send: the daemon replies with it.
      await dealer.send([Buffer.alloc(0), Buffer.from(serialize(req))]);
      const frames = await dealer.receive();
      const body = frames[0]?.length === 0 ? frames.slice(1) : frames;
      if (body.length !== 1) throw new BusError(`bad reply from daemon: ${body.length} frames`);
      const reply = parseReply(body[0] as Buffer);
      if (isProtocolError(reply)) throw new BusError(`bad reply from daemon: ${reply.error}`);
      return reply;
    })();
    // Once the deadline wins, closing the socket rejects the exchange: nobody listens then.
    exchange.catch(() => {});
    return await Promise.race([exchange, deadline]).catch((err: unknown) => {
      throw isTimeout(err) ? new BusTimeout(timeoutMs) : err;
    });
  } finally {
    clearTimeout(timer);
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
