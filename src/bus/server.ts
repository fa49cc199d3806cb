// The daemon's side of the bus (SPEC §1): a ROUTER socket answering requests, each handled
// concurrently so a slow apply never delays a ping, and a PUB socket for events.
import { chmod, lstat, mkdir, unlink } from "node:fs/promises";
import path from "node:path";
import { BusError } from "../errors.js";
import { probeSocket } from "./probe.js";
import {
  type BusEvent,
  errorReply,
  parseRequest,
  type Reply,
  type Request,
  serialize,
} from "./protocol.js";
import { loadZmq, retryInterrupted } from "./zmq.js";

export interface BusServer {
  publish(e: BusEvent): Promise<void>;
  close(): Promise<void>;
}

export interface BusOptions {
  /** Absolute path of the request socket file (already under --root). */
  socket: string;
  eventsSocket: string;
  handle(req: Request): Promise<Reply>;
  /** Told about bus errors that are not any one request's (for the daemon's log). */
  onError?(err: unknown): void;
}

// Frames beyond this size are cut off by libzmq (the peer is disconnected) instead of being
// buffered; between MAX_MESSAGE_BYTES and this, the peer gets an error reply.
const HARD_FRAME_LIMIT = 1024 * 1024;
// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
const MAX_IPC_PATH = 107;

/** Runs async sends one at a time: a zeromq socket allows one send in progress. */
function sendQueue(send: (frames: Buffer[]) => Promise<void>): (frames: Buffer[]) => Promise<void> {
  let tail: Promise<void> = Promise.resolve();
  return (frames) => {
    const next = tail.then(() => send(frames));
    tail = next.catch(() => {});
    return next;
  };
}

async function prepareSocketPath(file: string): Promise<void> {
  if (Buffer.byteLength(file) > MAX_IPC_PATH) {
    throw new BusError(
      `socket path too long for a unix socket (max ${MAX_IPC_PATH} bytes): ${file}`,
    );
  }
  // Created root-only; an existing directory is left as the admin made it.
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const st = await lstat(file).catch(() => null);
  if (st === null) return;
  if (!st.isSocket()) throw new BusError(`${file} exists and is not a socket; not removing it`);
  if (await probeSocket(file)) {
    throw new BusError(`another pve-nat daemon is already listening on ${file}`);
  }
  await unlink(file);
}

/** Splits a ROUTER message into its routing envelope and body. A REQ peer sends
 *  [id, "", body]; a DEALER peer of ours sends the same; a bare DEALER sends [id, body]. */
function splitEnvelope(frames: Buffer[]): { envelope: Buffer[]; body: Buffer[] } {
  const delimiter = frames.findIndex((f, i) => i > 0 && f.length === 0);
  if (delimiter === -1) return { envelope: frames.slice(0, 1), body: frames.slice(1) };
  return { envelope: frames.slice(0, delimiter + 1), body: frames.slice(delimiter + 1) };
}

async function answer(body: Buffer[], handle: BusOptions["handle"]): Promise<Reply> {
  if (body.length !== 1) return errorReply(`expected one message frame, got ${body.length}`);
  const req = parseRequest(body[0] as Buffer);
  if ("error" in req) return errorReply(req.error);
  try {
    return await handle(req);
  } catch (err) {
    return errorReply(err instanceof Error ? err.message : String(err));
  }
}

function replyText(reply: Reply): string {
  try {
    return serialize(reply);
  } catch (err) {
    return serialize(errorReply(err instanceof Error ? err.message : String(err)));
  }
}

export async function startBus(opts: BusOptions): Promise<BusServer> {
  await prepareSocketPath(opts.socket);
  await prepareSocketPath(opts.eventsSocket);

  const zmq = await loadZmq();
  const router = new zmq.Router({ linger: 0, maxMessageSize: HARD_FRAME_LIMIT });
  const publisher = new zmq.Publisher({ linger: 0, noDrop: false });
  try {
    await router.bind(`ipc://${opts.socket}`);
    await publisher.bind(`ipc://${opts.eventsSocket}`);
  } catch (err) {
    router.close();
    publisher.close();
    throw new BusError(
      `cannot listen on ${opts.socket}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  await Promise.all([chmod(opts.socket, 0o600), chmod(opts.eventsSocket, 0o600)]);

  const sendReply = sendQueue((frames) => retryInterrupted(() => router.send(frames)));
  const sendEvent = sendQueue((frames) => retryInterrupted(() => publisher.send(frames)));

  const serve = async (): Promise<void> => {
    while (!router.closed) {
      let frames: Buffer[];
      try {
        frames = await retryInterrupted(() => router.receive());
      } catch (err) {
        if (router.closed) return;
        // A transient receive error must not end the daemon's bus; pause so it cannot spin.
        opts.onError?.(err);
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const { envelope, body } = splitEnvelope(frames);
      // Not awaited: the next request is read while this one is handled.
      void answer(body, opts.handle)
        .then((reply) => sendReply([...envelope, Buffer.from(replyText(reply))]))
        // The peer may have gone away (hook timed out): nothing to do.
        .catch(() => {});
    }
  };
  const serving = serve();

  let closed = false;
  return {
    async publish(e) {
      if (closed) return;
      // Events are best effort (PUB drops them for slow or absent subscribers anyway): a
      // failed publish must never fail the apply that caused it.
      await sendEvent([Buffer.from(serialize(e))]).catch((err: unknown) => opts.onError?.(err));
    },
    async close() {
      if (closed) return;
      closed = true;
      router.close();
      publisher.close();
      // Handlers still running finish on their own; their replies are dropped.
      await serving.catch(() => {});
      await Promise.all([
        unlink(opts.socket).catch(() => {}),
        unlink(opts.eventsSocket).catch(() => {}),
      ]);
    },
  };
}
