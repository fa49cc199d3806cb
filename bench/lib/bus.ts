// A bench-side bus client: one DEALER socket kept open, requests tagged so that many can be in
// flight at once (the burst) and each reply is matched to its guest.
import * as zmq from "zeromq";
import {
  isProtocolError,
  parseReply,
  type Reply,
  type Request,
  serialize,
} from "../../src/bus/protocol.js";

export interface BusClient {
  /** One request, waiting for its reply; null on timeout. */
  call(req: Request, timeoutMs: number): Promise<Reply | null>;
  /** Sends every request as fast as the socket takes them, then collects replies until all are
   *  in or timeoutMs passes. Returns the arrival time (performance.now) of each reply by index. */
  burst(
    reqs: readonly Request[],
    timeoutMs: number,
  ): Promise<{ sentAt: number; replies: Array<{ reply: Reply; at: number } | undefined> }>;
  close(): void;
}

export function busClient(socket: string): BusClient {
  const dealer = new zmq.Dealer({ linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 });
  dealer.connect(`ipc://${socket}`);
  let seq = 0;
  const pending = new Map<number, (r: { reply: Reply; at: number }) => void>();
  // The daemon's ROUTER returns everything before the empty delimiter: our tag comes back.
  void (async () => {
    try {
      for await (const frames of dealer) {
        const at = performance.now();
        const [tag, empty, body] = frames;
        if (tag?.length !== 4 || empty?.length !== 0 || !body) continue;
        const reply = parseReply(body);
        const id = tag.readUInt32BE(0);
        const done = pending.get(id);
        pending.delete(id);
        if (done && !isProtocolError(reply)) done({ reply, at });
      }
    } catch {
      // closed
    }
  })();

  async function send(req: Request, onReply: (r: { reply: Reply; at: number }) => void) {
    const id = ++seq;
    const tag = Buffer.alloc(4);
    tag.writeUInt32BE(id);
    pending.set(id, onReply);
    await dealer.send([tag, Buffer.alloc(0), Buffer.from(serialize(req))]);
    return id;
  }

  return {
    async call(req, timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      let id = 0;
      const r = await new Promise<Reply | null>((resolve) => {
        timer = setTimeout(() => resolve(null), timeoutMs);
        void send(req, (x) => resolve(x.reply)).then((i) => {
          id = i;
        });
      });
      clearTimeout(timer);
      pending.delete(id);
      return r;
    },
    async burst(reqs, timeoutMs) {
      const replies: Array<{ reply: Reply; at: number } | undefined> = new Array(reqs.length);
      let left = reqs.length;
      let resolveAll: () => void = () => {};
      const all = new Promise<void>((res) => {
        resolveAll = res;
      });
      const sentAt = performance.now();
      for (const [i, req] of reqs.entries()) {
        await send(req, (x) => {
          replies[i] = x;
          if (--left === 0) resolveAll();
        });
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all, new Promise<void>((res) => (timer = setTimeout(res, timeoutMs)))]);
      clearTimeout(timer);
      return { sentAt, replies };
    },
    close() {
      pending.clear();
      dealer.close();
    },
  };
}

/** A stand-in for the daemon's bus that holds each request until the bench answers it. A hook
 *  process sent to it waits for its answer as a hook waits while the daemon applies; the bench
 *  times a bare restore in that wait (the floor of a hook event, in bench/lib/inner.ts). */
export interface HoldingBus {
  /** The next request's answer function, once a request is in; null after timeoutMs. */
  next(timeoutMs: number): Promise<((message: string) => Promise<void>) | null>;
  close(): void;
}

export async function holdingBus(socket: string): Promise<HoldingBus> {
  const router = new zmq.Router({ linger: 0 });
  await router.bind(`ipc://${socket}`);
  return {
    async next(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<null>((res) => {
        timer = setTimeout(() => res(null), timeoutMs);
      });
      // Our hooks send [identity, "", body] (server.ts): the answer keeps the envelope.
      const frames = await Promise.race([router.receive(), timeout]);
      clearTimeout(timer);
      if (frames === null) return null;
      const envelope = frames.slice(0, -1);
      return async (message) => {
        const reply: Reply = { v: 1, ok: true, message };
        await router.send([...envelope, Buffer.from(serialize(reply))]);
      };
    },
    close() {
      router.close();
    },
  };
}
