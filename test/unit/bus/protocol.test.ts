import { describe, expect, it } from "vitest";
import {
  type BusEvent,
  eventToJson,
  isProtocolError,
  MAX_MESSAGE_BYTES,
  MAX_REPLY_BYTES,
  parseEvent,
  parseReply,
  parseRequest,
  type Request,
  serialize,
} from "../../../src/bus/protocol.js";
import { parseVmid } from "../../../src/names.js";

const valid: Request[] = [
  { v: 1, type: "hook", vmid: 107, phase: "pre-start" },
  { v: 1, type: "hook", vmid: 100, phase: "post-start" },
  { v: 1, type: "hook", vmid: 999999999, phase: "pre-stop" },
  { v: 1, type: "hook", vmid: 107, phase: "post-stop", migratedFrom: "pve2" },
  { v: 1, type: "notify", what: "reload" },
  { v: 1, type: "guest", vmid: 107, up: true },
  { v: 1, type: "guest", vmid: 107, up: false },
  { v: 1, type: "apply", vmid: 107 },
  { v: 1, type: "apply", vmid: null },
  { v: 1, type: "flush" },
  { v: 1, type: "status" },
  { v: 1, type: "metrics" },
  { v: 1, type: "ping" },
];

describe("parseRequest", () => {
  it.each(valid)("accepts and round-trips %j", (req) => {
    expect(parseRequest(serialize(req))).toEqual(req);
    expect(parseRequest(Buffer.from(JSON.stringify(req)))).toEqual(req);
  });

  it.each<[string, string | Uint8Array, RegExp]>([
    ["empty", "", /not valid JSON/],
    ["not JSON", "hello", /not valid JSON/],
    ["truncated", '{"v":1,"type":"ping"', /not valid JSON/],
    ["array", "[1,2]", /not a JSON object/],
    ["null", "null", /not a JSON object/],
    ["string", '"ping"', /not a JSON object/],
    ["number", "1", /not a JSON object/],
    ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /UTF-8/],
    ["no version", '{"type":"ping"}', /no protocol version/],
    ["version 2", '{"v":2,"type":"ping"}', /unsupported protocol version 2/],
    ["version as string", '{"v":"1","type":"ping"}', /unsupported protocol version "1"/],
    ["no type", '{"v":1}', /field "type" must be a string/],
    ["type number", '{"v":1,"type":3}', /field "type"/],
    ["unknown type", '{"v":1,"type":"shutdown"}', /known request type/],
    ["prototype type", '{"v":1,"type":"__proto__"}', /known request type/],
    ["extra field", '{"v":1,"type":"ping","x":1}', /unexpected field "x"/],
    [
      "__proto__ field",
      '{"v":1,"type":"ping","__proto__":{"a":1}}',
      /unexpected field "__proto__"/,
    ],
    ["hook without vmid", '{"v":1,"type":"hook","phase":"pre-start"}', /missing field "vmid"/],
    ["hook without phase", '{"v":1,"type":"hook","vmid":107}', /missing field "phase"/],
    ["vmid as string", '{"v":1,"type":"hook","vmid":"107","phase":"pre-start"}', /vmid/],
    ["vmid 99", '{"v":1,"type":"hook","vmid":99,"phase":"pre-start"}', /vmid/],
    ["vmid 0", '{"v":1,"type":"guest","vmid":0,"up":true}', /vmid/],
    ["vmid negative", '{"v":1,"type":"guest","vmid":-107,"up":true}', /vmid/],
    ["vmid too big", '{"v":1,"type":"hook","vmid":1000000000,"phase":"pre-start"}', /vmid/],
    ["vmid fraction", '{"v":1,"type":"hook","vmid":107.5,"phase":"pre-start"}', /vmid/],
    ["vmid exponent huge", '{"v":1,"type":"hook","vmid":1e400,"phase":"pre-start"}', /vmid/],
    ["vmid null on hook", '{"v":1,"type":"hook","vmid":null,"phase":"pre-start"}', /vmid/],
    ["phase unknown", '{"v":1,"type":"hook","vmid":107,"phase":"pre-migrate"}', /phase/],
    ["phase case", '{"v":1,"type":"hook","vmid":107,"phase":"PRE-START"}', /phase/],
    [
      "migratedFrom number",
      '{"v":1,"type":"hook","vmid":107,"phase":"pre-start","migratedFrom":5}',
      /migratedFrom/,
    ],
    [
      "migratedFrom shell",
      '{"v":1,"type":"hook","vmid":107,"phase":"pre-start","migratedFrom":"a;rm -rf /"}',
      /migratedFrom/,
    ],
    [
      "migratedFrom path",
      '{"v":1,"type":"hook","vmid":107,"phase":"pre-start","migratedFrom":"../x"}',
      /migratedFrom/,
    ],
    ["notify other", '{"v":1,"type":"notify","what":"restart"}', /what/],
    ["notify missing what", '{"v":1,"type":"notify"}', /missing field "what"/],
    ["guest up string", '{"v":1,"type":"guest","vmid":107,"up":"yes"}', /up/],
    ["guest up 1", '{"v":1,"type":"guest","vmid":107,"up":1}', /up/],
    ["apply missing vmid", '{"v":1,"type":"apply"}', /missing field "vmid"/],
    ["apply vmid string", '{"v":1,"type":"apply","vmid":"all"}', /vmid/],
    ["flush with arg", '{"v":1,"type":"flush","all":true}', /unexpected field "all"/],
  ])("rejects %s", (_name, raw, message) => {
    const got = parseRequest(raw);
    expect(isProtocolError(got)).toBe(true);
    expect("error" in got && got.error).toMatch(message);
  });

  it("rejects a message over the size limit before parsing it", () => {
    const big = JSON.stringify({ v: 1, type: "ping", pad: "x".repeat(MAX_MESSAGE_BYTES) });
    expect(parseRequest(big)).toEqual({
      error: `message too large (${Buffer.byteLength(big)} bytes, limit ${MAX_MESSAGE_BYTES})`,
    });
  });

  it("measures the limit in bytes, not characters", () => {
    // 3-byte characters: under the limit in characters, over it in bytes.
    const text = `{"v":1,"type":"ping","p":"${"€".repeat(MAX_MESSAGE_BYTES / 3 + 10)}"}`;
    expect(text.length).toBeLessThan(MAX_MESSAGE_BYTES);
    expect(parseRequest(text)).toMatchObject({ error: expect.stringMatching(/too large/) });
  });
});

describe("parseReply", () => {
  it.each([
    { v: 1, ok: true, message: "3 forwards live" },
    { v: 1, ok: true, message: "", result: { forwards: [1, 2] } },
    { v: 1, ok: false, error: "vm107: no address" },
  ] as const)("round-trips %j", (reply) => {
    expect(parseReply(serialize(reply))).toEqual(reply);
  });

  it.each<[string, string, RegExp]>([
    ["ok missing", '{"v":1,"message":"x"}', /field "ok"/],
    ["ok as string", '{"v":1,"ok":"true","message":"x"}', /field "ok"/],
    ["ok without message", '{"v":1,"ok":true}', /missing field "message"/],
    ["message number", '{"v":1,"ok":true,"message":3}', /message/],
    ["error missing", '{"v":1,"ok":false}', /missing field "error"/],
    [
      "error with message",
      '{"v":1,"ok":false,"error":"e","message":"m"}',
      /unexpected field "message"/,
    ],
    ["error not string", '{"v":1,"ok":false,"error":{}}', /error/],
    ["wrong version", '{"v":0,"ok":true,"message":"x"}', /version/],
  ])("rejects %s", (_name, raw, message) => {
    const got = parseReply(raw);
    expect(isProtocolError(got)).toBe(true);
    expect("error" in got && got.error).toMatch(message);
  });

  it("an error reply is a reply, not a protocol error", () => {
    const got = parseReply('{"v":1,"ok":false,"error":"boom"}');
    expect(isProtocolError(got)).toBe(false);
  });

  it("allows replies larger than a request but not unbounded", () => {
    const big = {
      v: 1,
      ok: true,
      message: "x",
      result: "y".repeat(MAX_MESSAGE_BYTES * 2),
    } as const;
    expect(parseReply(serialize(big))).toEqual(big);
    const huge = `{"v":1,"ok":true,"message":"${"z".repeat(MAX_REPLY_BYTES)}"}`;
    expect(parseReply(huge)).toMatchObject({ error: expect.stringMatching(/too large/) });
  });
});

describe("events", () => {
  const event: BusEvent = {
    type: "applied",
    ts: "2026-11-25T14:00:00.123Z",
    vmid: 107,
    rules: 3,
    ms: 4.2,
  };

  it.each<BusEvent>([
    event,
    { type: "removed", ts: "2026-11-25T14:00:00Z", vmid: null, rules: 0, ms: 0 },
    {
      type: "conflict",
      ts: "2026-11-25T14:00:00+01:00",
      vmid: 108,
      rules: 1,
      ms: 1,
      message: "tcp/822 taken by vm107",
    },
    { ...event, address: { from: "10.10.10.150", to: "10.10.10.60" } },
    { ...event, address: { from: null, to: "10.10.10.60" } },
    {
      ...event,
      guest_firewall: {
        state: "pending",
        ports: ["tcp/22", "udp/5000:5010"],
        chains: ["tap107i0-IN"],
      },
    },
  ])("round-trips %j with v on the wire", (e) => {
    const text = serialize(e);
    expect(JSON.parse(text).v).toBe(1);
    expect(parseEvent(text)).toEqual(e);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ["unknown type", { type: "started" }, /type/],
    ["address not an object", { address: "10.10.10.5" }, /address/],
    ["address with a bad IPv4", { address: { from: "x", to: null } }, /address/],
    ["address with an extra key", { address: { from: null, to: null, via: 1 } }, /address/],
    [
      "guest_firewall not pending",
      { guest_firewall: { state: "accepted", ports: [], chains: [] } },
      /guest_firewall/,
    ],
    [
      "guest_firewall with junk ports",
      { guest_firewall: { state: "pending", ports: ["22; rm"], chains: [] } },
      /guest_firewall/,
    ],
    [
      "guest_firewall with a foreign chain",
      { guest_firewall: { state: "pending", ports: [], chains: ["INPUT"] } },
      /guest_firewall/,
    ],
    ["bad ts", { ts: "yesterday" }, /ts/],
    ["rules negative", { rules: -1 }, /rules/],
    ["rules fraction", { rules: 1.5 }, /rules/],
    ["ms string", { ms: "4" }, /ms/],
    ["vmid 5", { vmid: 5 }, /vmid/],
    ["message number", { message: 5 }, /message/],
    ["extra", { extra: true }, /unexpected field "extra"/],
  ])("rejects %s", (_name, patch, message) => {
    const got = parseEvent(JSON.stringify({ v: 1, ...event, ...patch }));
    expect("error" in got && got.error).toMatch(message);
  });

  it("prints as SPEC §6 shows: no protocol field, fixed key order", () => {
    expect(JSON.stringify(eventToJson({ ...event, message: "m" }))).toBe(
      '{"type":"applied","ts":"2026-11-25T14:00:00.123Z","vmid":107,"rules":3,"ms":4.2,"message":"m"}',
    );
  });
});

describe("serialize", () => {
  it("refuses to send an oversize request", () => {
    const req = {
      v: 1,
      type: "hook",
      vmid: 107,
      phase: "pre-start",
      migratedFrom: "x".repeat(MAX_MESSAGE_BYTES),
    };
    expect(() => serialize(req as Request)).toThrow(RangeError);
  });
});

describe("parseVmid", () => {
  it.each<[string, number | null]>([
    ["107", 107],
    ["100", 100],
    ["999999999", 999999999],
    ["99", null],
    ["0107", null],
    ["1000000000", null],
    ["107 ", null],
    ["1e3", null],
    ["", null],
    ["-107", null],
    ["abc", null],
  ])("%j → %j", (text, vmid) => {
    expect(parseVmid(text)).toBe(vmid);
  });
});
