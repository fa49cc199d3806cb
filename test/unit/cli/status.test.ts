import { describe, expect, it } from "vitest";
import { forwardCounters, statusText } from "../../../src/cli/status.js";
import { renderRestore } from "../../../src/iptables/render.js";
import { parseSave } from "../../../src/iptables/save.js";
import { makePlan } from "../../helpers/fixtures.js";
import { simKernel } from "../../helpers/sim-kernel.js";

describe("status", () => {
  it("sums live counters per forward from `iptables-save -c`; inactive or unapplied forwards have none", async () => {
    const plan = makePlan([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102, state: "inactive" },
      { vmid: 103, port: 8103 },
    ]);
    const kernel = simKernel();
    // Only 101 is live.
    await kernel.restore(
      renderRestore({
        plan: { ...plan, chains: plan.chains.slice(0, 1) },
        owners: [101],
        entry: true,
        live: parseSave("", ""),
      }),
    );
    const line = kernel.tables.nat.get("PVENAT-101-DNAT")?.[0] as string;
    kernel.counters.set(line, [12, 720]);
    const live = parseSave(await kernel.save("nat", true), await kernel.save("raw", true));
    expect(forwardCounters(plan, live)).toEqual([{ packets: 12, bytes: 720 }, null, null]);
    // Read again with new counters (the daemon's next metrics write: counters.ts keeps each
    // rule's lookup key per rule object), and against a fresh copy of the plan.
    kernel.counters.set(line, [13, 780]);
    const later = parseSave(await kernel.save("nat", true), await kernel.save("raw", true));
    expect(forwardCounters(plan, later)).toEqual([{ packets: 13, bytes: 780 }, null, null]);
    expect(forwardCounters(structuredClone(plan), later)).toEqual(forwardCounters(plan, later));
  });

  it("prints one row per forward with counters, then the daemon's state", () => {
    const plan = makePlan([
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102, state: "inactive" },
    ]);
    const text = statusText(plan, [{ packets: 3, bytes: 180 }, null], {
      running: true,
      pid: 42,
      backend: "nft",
      paused: true,
      lastSync: "2026-11-25T12:00:00.000Z",
      lastError: null,
    });
    expect(text.split("\n")).toEqual([
      "node pve1",
      "VMID  NAME      DIR  PROTO  PUBLIC             PRIVATE          ADDR-FROM  SOURCE  STATE     ORIGIN             PKTS  BYTES",
      "101   guest101  in   tcp    203.0.113.10:8101  10.10.10.101:22  config     any     active    firewall/101.fw:4  3     180",
      "102   guest102  in   tcp    203.0.113.10:8102  10.10.10.102:22  config     any     inactive  firewall/102.fw:4  -     -",
      "",
      "daemon: running (pid 42, nft), PAUSED after flush — run `pve-nat apply --all`, last sync 2026-11-25T12:00:00.000Z",
      "",
    ]);
    expect(statusText(plan, [null, null], { running: false }).trim().split("\n").at(-1)).toBe(
      "daemon: not running",
    );
  });
});
