import { describe, expect, it } from "vitest";
import {
  decodeProcAddress,
  interfaceIPv4Reader,
  parseListening,
  routedIPv4Reader,
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

describe("interfaceIPv4Reader on this host", () => {
  it("reads lo's address (read-only, root namespace)", async () => {
    expect(await interfaceIPv4Reader()("lo")).toBe("127.0.0.1");
  });
  it("an absent device → null", async () => {
    expect(await interfaceIPv4Reader()("pvenat-nodev0")).toBeNull();
  });
});

describe("interfaceIPv4Reader (the daemon's poller)", () => {
  const v4 = (address: string) =>
    ({
      address,
      family: "IPv4",
      netmask: "255.255.255.0",
      mac: "",
      internal: false,
      cidr: null,
    }) as never;

  it("asks ip at most once per interval for an interface getifaddrs leaves out", async () => {
    let t = 0;
    const asked: string[] = [];
    const read = interfaceIPv4Reader({
      everyMs: 10_000,
      now: () => t,
      list: () => ({}),
      ask: async (iface) => {
        asked.push(iface);
        return `203.0.113.${asked.length}`;
      },
    });
    expect(await read("vmbr0")).toBe("203.0.113.1");
    t = 9_999;
    expect(await read("vmbr0")).toBe("203.0.113.1");
    expect(asked).toEqual(["vmbr0"]);
    t = 10_000;
    expect(await read("vmbr0")).toBe("203.0.113.2");
    // Another interface is its own question.
    expect(await read("vmbr9")).toBe("203.0.113.3");
    expect(asked).toEqual(["vmbr0", "vmbr0", "vmbr9"]);
  });

  it("answers from getifaddrs on every call once the interface is listed", async () => {
    let listed = false;
    let address = "203.0.113.10";
    let asks = 0;
    const read = interfaceIPv4Reader({
      now: () => 0,
      list: () => (listed ? { vmbr0: [v4(address)] } : {}),
      ask: async () => {
        asks++;
        return "203.0.113.99";
      },
    });
    expect(await read("vmbr0")).toBe("203.0.113.99");
    listed = true;
    expect(await read("vmbr0")).toBe("203.0.113.10");
    address = "203.0.113.11";
    expect(await read("vmbr0")).toBe("203.0.113.11");
    // Gone from getifaddrs again (carrier lost): ip is asked afresh, not the old answer reused.
    listed = false;
    expect(await read("vmbr0")).toBe("203.0.113.99");
    expect(asks).toBe(2);
  });
});

describe("routedIPv4Reader (getifaddrs only when the routing changed)", () => {
  it("asks again when /proc/net/fib_trie reads differently, or after everyMs", async () => {
    let t = 0;
    let fib: string | null = "Main: 203.0.113.10";
    let address = "203.0.113.10";
    const asked: string[] = [];
    const read = routedIPv4Reader({
      everyMs: 60_000,
      now: () => t,
      fib: () => fib,
      read: async (iface) => {
        asked.push(iface);
        return address;
      },
    });
    expect(await read("vmbr0")).toBe("203.0.113.10");
    t = 59_999;
    address = "203.0.113.11";
    expect(await read("vmbr0")).toBe("203.0.113.10");
    expect(asked).toHaveLength(1);
    // A DHCP lease moved the address: the routing reads differently at once.
    fib = "Main: 203.0.113.11";
    expect(await read("vmbr0")).toBe("203.0.113.11");
    expect(asked).toHaveLength(2);
    // Unchanged routing, but everyMs since the last lookup.
    address = "198.51.100.7";
    t = 59_999 + 60_000;
    expect(await read("vmbr0")).toBe("198.51.100.7");
    // Another interface, or no fib_trie at all: asked every time.
    expect(await read("vmbr9")).toBe("198.51.100.7");
    fib = null;
    expect(await read("vmbr9")).toBe("198.51.100.7");
    expect(await read("vmbr9")).toBe("198.51.100.7");
    expect(asked).toEqual(["vmbr0", "vmbr0", "vmbr0", "vmbr9", "vmbr9", "vmbr9"]);
  });

  it("with the kernel's address events: asks when one arrived, or after everyMs, never reads fib_trie", async () => {
    let t = 0;
    let event = false;
    let fibReads = 0;
    let address = "203.0.113.10";
    const asked: string[] = [];
    const read = routedIPv4Reader({
      everyMs: 60_000,
      now: () => t,
      fib: () => {
        fibReads++;
        return "Main";
      },
      addressEvents: () => {
        const e = event;
        event = false;
        return e;
      },
      read: async (iface) => {
        asked.push(iface);
        return address;
      },
    });
    expect(await read("vmbr0")).toBe("203.0.113.10");
    address = "203.0.113.11";
    t = 59_999;
    expect(await read("vmbr0")).toBe("203.0.113.10");
    expect(asked).toHaveLength(1);
    event = true;
    expect(await read("vmbr0")).toBe("203.0.113.11");
    expect(await read("vmbr0")).toBe("203.0.113.11");
    expect(asked).toHaveLength(2);
    address = "198.51.100.7";
    t = 59_999 + 60_000;
    expect(await read("vmbr0")).toBe("198.51.100.7");
    expect(await read("vmbr9")).toBe("198.51.100.7");
    expect(asked).toEqual(["vmbr0", "vmbr0", "vmbr0", "vmbr9"]);
    expect(fibReads).toBe(0);
  });

  it("on this host: lo's address, read through the routing table's check", async () => {
    const read = routedIPv4Reader();
    expect(await read("lo")).toBe("127.0.0.1");
    expect(await read("lo")).toBe("127.0.0.1");
  });
});
