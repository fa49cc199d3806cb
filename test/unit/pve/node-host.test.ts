import { describe, expect, it } from "vitest";
import {
  decodeProcAddress,
  interfaceIPv4,
  parseListening,
  sameHostPorts,
} from "../../../src/pve/host.js";

// Real /proc/net/tcp and tcp6 lines (header + LISTEN/ESTABLISHED entries).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21301 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22001 1 0000000000000000 100 0 0 10 0
   2: 0A7100CB:1F46 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23001 1 0000000000000000 100 0 0 10 0
   3: 0B7100CB:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23002 1 0000000000000000 100 0 0 10 0
   4: 0A7100CB:0016 0764336C:D3A2 01 00000000:00000000 02:0009A4F3 00000000     0        0 24001 4 0000000000000000 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0C38 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 25001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000A7100CB:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 25002 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 25003 1 0000000000000000 100 0 0 10 0
`;

describe("listening ports", () => {
  it.each([
    ["00000000", { v4: "0.0.0.0", any: true }],
    ["0100007F", { v4: "127.0.0.1", any: false }],
    ["0A7100CB", { v4: "203.0.113.10", any: false }],
    ["00000000000000000000000000000000", { v4: null, any: true }],
    ["0000000000000000FFFF00000A7100CB", { v4: "203.0.113.10", any: false }],
    ["00000000000000000000000001000000", { v4: null, any: false }],
  ])("decodes %s", (hex, expected) => {
    expect(decodeProcAddress(hex)).toEqual(expected);
  });

  it("keeps LISTEN sockets by bound address: wildcard, IPv4, v4-mapped (not IPv6-only ones)", () => {
    expect(parseListening([TCP, TCP6])).toEqual({
      any: [22, 3128],
      at: { "127.0.0.1": [25], "203.0.113.10": [443, 8006], "203.0.113.11": [80] },
    });
    expect(parseListening([TCP])).toEqual({
      any: [22],
      at: { "127.0.0.1": [25], "203.0.113.10": [8006], "203.0.113.11": [80] },
    });
    expect(parseListening([""])).toEqual({ any: [], at: {} });
  });

  it.each([
    [{ any: [], at: {} }, { any: [], at: {} }, true],
    [{ any: [22], at: {} }, { any: [22], at: {} }, true],
    [{ any: [22], at: {} }, { any: [22, 80], at: {} }, false],
    [{ any: [], at: { "203.0.113.5": [80] } }, { any: [], at: { "203.0.113.5": [80] } }, true],
    [{ any: [], at: { "203.0.113.5": [80] } }, { any: [], at: { "203.0.113.6": [80] } }, false],
    [{ any: [], at: { "203.0.113.5": [80] } }, { any: [], at: { "203.0.113.5": [81] } }, false],
  ])("sameHostPorts %j %j → %s", (a, b, same) => {
    expect(sameHostPorts(a, b)).toBe(same);
  });
});

describe("interfaceIPv4", () => {
  it("reads lo's address (read-only, root namespace)", async () => {
    expect(await interfaceIPv4("lo")).toBe("127.0.0.1");
  });
  it("an absent device → null", async () => {
    expect(await interfaceIPv4("pvenat-nodev0")).toBeNull();
  });
});
