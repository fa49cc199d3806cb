import { describe, expect, it } from "vitest";
import {
  conntrackCleaner,
  deletesFor,
  forwardsGone,
  MAX_DELETES,
} from "../../../src/daemon/conntrack.js";
import type { Forward } from "../../../src/model.js";
import { makePlan, silent } from "../../helpers/fixtures.js";

function fwd(over: Partial<Forward>): Forward {
  return {
    vmid: 107,
    name: "web",
    direction: "in",
    proto: "tcp",
    public: { address: "203.0.113.10", ports: "822" },
    private: { address: "10.10.10.107", ports: "22", addressSource: "config" },
    source: null,
    destination: null,
    origin: "firewall/107.fw:4",
    state: "active",
    reason: null,
    ...over,
  };
}

describe("conntrack deletions", () => {
  it.each([
    [
      "single port",
      fwd({}),
      [["-p", "tcp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "822"]],
    ],
    [
      "port list, udp",
      fwd({ proto: "udp", public: { address: "203.0.113.10", ports: "53,5353" } }),
      [
        ["-p", "udp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "53"],
        ["-p", "udp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "5353"],
      ],
    ],
    [
      "small range",
      fwd({ public: { address: "203.0.113.10", ports: "8000:8002" } }),
      [8000, 8001, 8002].map((p) => [
        "-p",
        "tcp",
        "--orig-dst",
        "203.0.113.10",
        "--orig-port-dst",
        String(p),
      ]),
    ],
    [
      "large range → by the guest's replies",
      fwd({ public: { address: "203.0.113.10", ports: "8000:9000" } }),
      [["-p", "tcp", "--reply-src", "10.10.10.107"]],
    ],
    [
      "no public address",
      fwd({ public: { address: null, ports: "822" } }),
      [["-p", "tcp", "--reply-src", "10.10.10.107"]],
    ],
    [
      "out, masquerade to one destination port",
      fwd({
        direction: "out",
        public: { address: null, ports: null },
        destination: "198.51.100.7",
        private: { address: "10.10.10.107", ports: "443", addressSource: "config" },
      }),
      [
        [
          "-p",
          "tcp",
          "--orig-src",
          "10.10.10.107",
          "--orig-dst",
          "198.51.100.7",
          "--orig-port-dst",
          "443",
        ],
      ],
    ],
    [
      "out, any protocol, alias destination",
      fwd({
        direction: "out",
        proto: null,
        public: { address: null, ports: null },
        destination: "office",
        private: { address: "10.10.10.107", ports: null, addressSource: "config" },
      }),
      [["--orig-src", "10.10.10.107"]],
    ],
    [
      "out, guest address not a single IPv4",
      fwd({
        direction: "out",
        private: { address: "10.10.10.0/24", ports: null, addressSource: "config" },
      }),
      [],
    ],
  ] as const)("%s", (_what, f, expected) => {
    expect(deletesFor(f)).toEqual(expected);
  });

  it("only forwards that went away, of the rendered owners, once each", () => {
    const before = makePlan([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
      { vmid: 103, port: 8103 },
    ]);
    const after = makePlan([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102, state: "inactive" },
      { vmid: 103, port: 8103, state: "inactive" },
    ]);
    expect(forwardsGone(before, after, new Set([101, 102]))).toEqual([
      ["-p", "tcp", "--orig-dst", "203.0.113.10", "--orig-port-dst", "8102"],
    ]);
  });

  it("runs `conntrack -D`, treats 'nothing matched' as fine, logs failures, and is bounded", async () => {
    const calls: string[][] = [];
    const warnings: unknown[] = [];
    const log = {
      ...silent,
      warn: (o: unknown) => warnings.push(o),
      debug: () => {},
    } as unknown as typeof silent;
    const clean = conntrackCleaner(log, async (args) => {
      calls.push(args);
      if (args.includes("1"))
        return {
          code: 1,
          stderr: "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n",
        };
      if (args.includes("2")) return { code: 2, stderr: "Operation not permitted" };
      return { code: 0, stderr: "1 flow entries have been deleted." };
    });
    await clean([
      ["--orig-port-dst", "1"],
      ["--orig-port-dst", "2"],
      ["--orig-port-dst", "3"],
    ]);
    expect(calls).toEqual([
      ["-D", "--orig-port-dst", "1"],
      ["-D", "--orig-port-dst", "2"],
      ["-D", "--orig-port-dst", "3"],
    ]);
    expect(warnings).toEqual([
      { args: ["--orig-port-dst", "2"], exitCode: 2, stderr: "Operation not permitted" },
    ]);
    calls.length = 0;
    await clean(
      Array.from({ length: MAX_DELETES + 10 }, (_, i) => ["--orig-port-dst", String(1000 + i)]),
    );
    expect(calls).toHaveLength(MAX_DELETES);
  });
});
