// Bus messages (SPEC §1): versioned JSON, at most 64 KiB, validated field by field. Pure.
// Anything a peer sends is untrusted: a message is accepted only when every key is known and
// every value has the expected type and range, so junk can never reach the daemon's handler.

import { isVmid, MAX_VMID, MIN_VMID, NODE_NAME } from "../names.js";

export const PROTOCOL_VERSION = 1;
/** Largest request or event accepted or sent, in bytes of UTF-8 JSON. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Replies come from the daemon (trusted by the CLI) and may carry a whole status: more room. */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;

export const HOOK_PHASES = ["pre-start", "post-start", "pre-stop", "post-stop"] as const;
export type HookPhase = (typeof HOOK_PHASES)[number];

export type Request =
  | { v: 1; type: "hook"; vmid: number; phase: HookPhase; migratedFrom?: string }
  | { v: 1; type: "notify"; what: "reload" }
  | { v: 1; type: "guest"; vmid: number; up: boolean }
  | { v: 1; type: "apply"; vmid: number | null } // null = --all
  | { v: 1; type: "flush" }
  | { v: 1; type: "status" }
  | { v: 1; type: "metrics" }
  | { v: 1; type: "ping" };

export type Reply =
  | { v: 1; ok: true; message: string; result?: unknown }
  | { v: 1; ok: false; error: string };

export const EVENT_TYPES = ["applied", "removed", "error", "conflict"] as const;
export type BusEvent = {
  type: (typeof EVENT_TYPES)[number];
  ts: string;
  vmid: number | null;
  rules: number;
  ms: number;
  message?: string;
  /** `applied` after the guest's address changed (a new lease, an IPAM edit): old → new. */
  address?: { from: string | null; to: string | null };
  /** `applied` while the guest firewall (pve-firewall's NIC chain) does not yet admit some of
   *  the guest's forwards: their private ports ("tcp/22") and the chains that lack them. */
  guest_firewall?: GuestFirewallPending;
};

export interface GuestFirewallPending {
  state: "pending";
  ports: string[];
  chains: string[];
}

const PORT_ITEM = /^(tcp|udp)\/[0-9][0-9,:]{0,99}$/;
const CHAIN_ITEM = /^(tap|veth)[0-9]{3,9}i[0-9]{1,2}-IN$/;

const IPV4_OR_NULL = (v: unknown) =>
  v === null || (typeof v === "string" && /^\d{1,3}(\.\d{1,3}){3}$/.test(v));

type Invalid = { error: string };
type Obj = Record<string, unknown>;

const ISO_TS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

function byteLength(raw: Uint8Array | string): number {
  return typeof raw === "string" ? Buffer.byteLength(raw, "utf8") : raw.byteLength;
}

function decode(raw: Uint8Array | string, limit = MAX_MESSAGE_BYTES): Obj | Invalid {
  const bytes = byteLength(raw);
  if (bytes > limit) return { error: `message too large (${bytes} bytes, limit ${limit})` };
  let text: string;
  try {
    text = typeof raw === "string" ? raw : new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    return { error: "message is not valid UTF-8" };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { error: "message is not valid JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { error: "message is not a JSON object" };
  }
  const obj = value as Obj;
  if (!("v" in obj)) return { error: "message has no protocol version (v)" };
  if (obj.v !== PROTOCOL_VERSION) {
    return {
      error: `unsupported protocol version ${JSON.stringify(obj.v)} (expected ${PROTOCOL_VERSION})`,
    };
  }
  return obj;
}

function isInvalid(x: unknown): x is Invalid {
  return typeof x === "object" && x !== null && "error" in x && !("v" in x);
}

/** Tells a validation failure from a message (an error Reply also has `error`, but has `v`). */
export function isProtocolError<T extends object>(x: T | Invalid): x is Invalid {
  return isInvalid(x);
}

/** Every key present must be one of `allowed`; `required` keys must be present. */
function keys(obj: Obj, what: string, required: string[], optional: string[] = []): Invalid | null {
  for (const k of required) {
    if (!Object.hasOwn(obj, k)) return { error: `${what}: missing field "${k}"` };
  }
  for (const k of Object.keys(obj)) {
    if (!required.includes(k) && !optional.includes(k)) {
      return { error: `${what}: unexpected field ${JSON.stringify(k)}` };
    }
  }
  return null;
}

function badField(what: string, field: string, expected: string, value: unknown): Invalid {
  const shown = JSON.stringify(value) ?? String(value);
  return {
    error: `${what}: field "${field}" must be ${expected}, got ${shown.length > 40 ? `${shown.slice(0, 40)}…` : shown}`,
  };
}

const VMID_TEXT = `an integer VMID ${MIN_VMID}..${MAX_VMID}`;

function validateRequest(obj: Obj): Request | Invalid {
  const type = obj.type;
  if (typeof type !== "string") return badField("request", "type", "a string", type);
  const what = `${type} request`;
  switch (type) {
    case "hook": {
      const bad = keys(obj, what, ["v", "type", "vmid", "phase"], ["migratedFrom"]);
      if (bad) return bad;
      if (!isVmid(obj.vmid)) return badField(what, "vmid", VMID_TEXT, obj.vmid);
      if (!HOOK_PHASES.includes(obj.phase as HookPhase)) {
        return badField(what, "phase", HOOK_PHASES.join("|"), obj.phase);
      }
      const req: Request = { v: 1, type, vmid: obj.vmid, phase: obj.phase as HookPhase };
      if (obj.migratedFrom !== undefined) {
        if (typeof obj.migratedFrom !== "string" || !NODE_NAME.test(obj.migratedFrom)) {
          return badField(what, "migratedFrom", "a node name", obj.migratedFrom);
        }
        req.migratedFrom = obj.migratedFrom;
      }
      return req;
    }
    case "notify": {
      const bad = keys(obj, what, ["v", "type", "what"]);
      if (bad) return bad;
      if (obj.what !== "reload") return badField(what, "what", '"reload"', obj.what);
      return { v: 1, type, what: "reload" };
    }
    case "guest": {
      const bad = keys(obj, what, ["v", "type", "vmid", "up"]);
      if (bad) return bad;
      if (!isVmid(obj.vmid)) return badField(what, "vmid", VMID_TEXT, obj.vmid);
      if (typeof obj.up !== "boolean") return badField(what, "up", "true or false", obj.up);
      return { v: 1, type, vmid: obj.vmid, up: obj.up };
    }
    case "apply": {
      const bad = keys(obj, what, ["v", "type", "vmid"]);
      if (bad) return bad;
      if (obj.vmid !== null && !isVmid(obj.vmid)) {
        return badField(what, "vmid", `${VMID_TEXT} or null`, obj.vmid);
      }
      return { v: 1, type, vmid: obj.vmid };
    }
    case "flush":
    case "status":
    case "metrics":
    case "ping": {
      const bad = keys(obj, what, ["v", "type"]);
      if (bad) return bad;
      return { v: 1, type };
    }
    default:
      return badField("request", "type", "a known request type", type);
  }
}

export function parseRequest(raw: Uint8Array | string): Request | { error: string } {
  const obj = decode(raw);
  return isInvalid(obj) ? obj : validateRequest(obj);
}

export function parseReply(raw: Uint8Array | string): Reply | { error: string } {
  const obj = decode(raw, MAX_REPLY_BYTES);
  if (isInvalid(obj)) return obj;
  if (obj.ok === true) {
    const bad = keys(obj, "reply", ["v", "ok", "message"], ["result"]);
    if (bad) return bad;
    if (typeof obj.message !== "string")
      return badField("reply", "message", "a string", obj.message);
    const reply: Reply = { v: 1, ok: true, message: obj.message };
    if (obj.result !== undefined) reply.result = obj.result;
    return reply;
  }
  if (obj.ok === false) {
    const bad = keys(obj, "reply", ["v", "ok", "error"]);
    if (bad) return bad;
    if (typeof obj.error !== "string") return badField("reply", "error", "a string", obj.error);
    return { v: 1, ok: false, error: obj.error };
  }
  return badField("reply", "ok", "true or false", obj.ok);
}

export function parseEvent(raw: Uint8Array | string): BusEvent | { error: string } {
  const obj = decode(raw);
  if (isInvalid(obj)) return obj;
  const what = "event";
  const bad = keys(
    obj,
    what,
    ["v", "type", "ts", "vmid", "rules", "ms"],
    ["message", "address", "guest_firewall"],
  );
  if (bad) return bad;
  if (!EVENT_TYPES.includes(obj.type as BusEvent["type"])) {
    return badField(what, "type", EVENT_TYPES.join("|"), obj.type);
  }
  if (typeof obj.ts !== "string" || !ISO_TS.test(obj.ts)) {
    return badField(what, "ts", "an ISO 8601 timestamp", obj.ts);
  }
  if (obj.vmid !== null && !isVmid(obj.vmid)) {
    return badField(what, "vmid", `${VMID_TEXT} or null`, obj.vmid);
  }
  if (!Number.isInteger(obj.rules) || (obj.rules as number) < 0) {
    return badField(what, "rules", "a non-negative integer", obj.rules);
  }
  if (typeof obj.ms !== "number" || !Number.isFinite(obj.ms) || obj.ms < 0) {
    return badField(what, "ms", "a non-negative number", obj.ms);
  }
  const event: BusEvent = {
    type: obj.type as BusEvent["type"],
    ts: obj.ts,
    vmid: obj.vmid as number | null,
    rules: obj.rules as number,
    ms: obj.ms,
  };
  if (obj.message !== undefined) {
    if (typeof obj.message !== "string") return badField(what, "message", "a string", obj.message);
    event.message = obj.message;
  }
  if (obj.address !== undefined) {
    const a = obj.address as Record<string, unknown> | null;
    const ok =
      typeof a === "object" &&
      a !== null &&
      Object.keys(a).every((k) => k === "from" || k === "to") &&
      IPV4_OR_NULL(a.from) &&
      IPV4_OR_NULL(a.to);
    if (!ok) return badField(what, "address", '{"from": IPv4|null, "to": IPv4|null}', obj.address);
    event.address = {
      from: (a.from ?? null) as string | null,
      to: (a.to ?? null) as string | null,
    };
  }
  if (obj.guest_firewall !== undefined) {
    const g = obj.guest_firewall as Record<string, unknown> | null;
    const list = (v: unknown, re: RegExp) =>
      Array.isArray(v) && v.length <= 64 && v.every((x) => typeof x === "string" && re.test(x));
    const ok =
      typeof g === "object" &&
      g !== null &&
      Object.keys(g).every((k) => k === "state" || k === "ports" || k === "chains") &&
      g.state === "pending" &&
      list(g.ports, PORT_ITEM) &&
      list(g.chains, CHAIN_ITEM);
    if (!ok) {
      return badField(
        what,
        "guest_firewall",
        '{"state": "pending", "ports": ["tcp/22"…], "chains": ["tap107i0-IN"…]}',
        obj.guest_firewall,
      );
    }
    event.guest_firewall = {
      state: "pending",
      ports: [...(g.ports as string[])],
      chains: [...(g.chains as string[])],
    };
  }
  return event;
}

/** The event as `pve-nat events` prints it (SPEC §6): no protocol field, fixed key order. */
export function eventToJson(e: BusEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: e.type,
    ts: e.ts,
    vmid: e.vmid,
    rules: e.rules,
    ms: e.ms,
  };
  if (e.message !== undefined) out.message = e.message;
  if (e.address !== undefined) out.address = { from: e.address.from, to: e.address.to };
  if (e.guest_firewall !== undefined) {
    out.guest_firewall = {
      state: e.guest_firewall.state,
      ports: [...e.guest_firewall.ports],
      chains: [...e.guest_firewall.chains],
    };
  }
  return out;
}

/** JSON text of a message, checked against its size limit (an oversize message is the
 *  sender's bug, so this throws RangeError). Events gain the `v` field on the wire. */
export function serialize(msg: Request | Reply | BusEvent): string {
  const isReply = "ok" in msg;
  const body = "v" in msg ? msg : { v: PROTOCOL_VERSION, ...msg };
  const text = JSON.stringify(body);
  const limit = isReply ? MAX_REPLY_BYTES : MAX_MESSAGE_BYTES;
  const bytes = byteLength(text);
  if (bytes > limit) throw new RangeError(`bus message too large (${bytes} bytes, limit ${limit})`);
  return text;
}

/** Reply for a message that failed validation, shortened so it always fits. */
export function errorReply(error: string): Reply {
  return { v: 1, ok: false, error: error.length > 1000 ? `${error.slice(0, 1000)}…` : error };
}
