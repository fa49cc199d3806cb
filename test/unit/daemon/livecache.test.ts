import { describe, expect, it } from "vitest";
import { replayPayload } from "../../../src/daemon/livecache.js";
import { renderFlush, renderRestore } from "../../../src/iptables/render.js";
import { type LiveState, parseSave } from "../../../src/iptables/save.js";
import type { Owner } from "../../../src/model.js";
import { type GuestSpec, makePlan } from "./fixtures.js";
import { simKernel } from "./sim-kernel.js";

const FOREIGN = {
  nat: "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -i vmbr9 -j RETURN\nCOMMIT\n",
  raw: "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -i vmbr9 -j NOTRACK\nCOMMIT\n",
};

function canonical(l: LiveState) {
  return {
    chains: Object.fromEntries([...l.chains].sort(([a], [b]) => (a < b ? -1 : 1))),
    jumps: [...l.jumps].sort((a, b) =>
      `${a.table}${a.chain}`.localeCompare(`${b.table}${b.chain}`),
    ),
  };
}

const STEPS: Array<{
  what: string;
  guests: GuestSpec[];
  owners: Owner[];
  entry: boolean;
  zoneFix?: boolean;
}> = [
  {
    what: "first full sync",
    guests: [
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
    ],
    owners: [101, 102],
    entry: true,
  },
  {
    what: "one guest edited",
    guests: [
      { vmid: 101, port: 8101, to: 2201 },
      { vmid: 102, port: 8102 },
    ],
    owners: [101],
    entry: false,
  },
  {
    what: "a guest appears",
    guests: [
      { vmid: 101, port: 8101 },
      { vmid: 102, port: 8102 },
      { vmid: 103, port: 8103 },
    ],
    owners: [103],
    entry: true,
  },
  {
    what: "a guest goes (stale chain deleted)",
    guests: [
      { vmid: 101, port: 8101 },
      { vmid: 103, port: 8103 },
    ],
    owners: [102],
    entry: false,
  },
  {
    what: "zone fix switched on",
    guests: [{ vmid: 101, port: 8101 }],
    owners: [103],
    entry: true,
    zoneFix: true,
  },
];

describe("replayPayload", () => {
  it("after every restore the replayed state equals what iptables-save then shows", async () => {
    const kernel = simKernel(FOREIGN);
    for (const step of STEPS) {
      const before = parseSave(await kernel.save("nat"), await kernel.save("raw"));
      const plan = makePlan(step.guests, { zoneFix: step.zoneFix ?? false });
      const payload = renderRestore({ plan, owners: step.owners, entry: step.entry, live: before });
      await kernel.restore(payload);
      const after = parseSave(await kernel.save("nat"), await kernel.save("raw"));
      const replayed = replayPayload(before, payload);
      expect(replayed, step.what).not.toBeNull();
      expect(canonical(replayed as LiveState), step.what).toEqual(canonical(after));
    }
  });

  it("replays a jump repair (missing and duplicated jumps) and a flush", async () => {
    const kernel = simKernel(FOREIGN);
    const plan = makePlan([{ vmid: 101, port: 8101 }]);
    await kernel.restore(
      renderRestore({ plan, owners: [101], entry: true, live: parseSave("", "") }),
    );
    kernel.edit("nat", (c) => {
      c.set("PREROUTING", ["-A PREROUTING -i vmbr9 -j RETURN"]);
      c.set("OUTPUT", ["-A OUTPUT -j PVENAT-OUTPUT", "-A OUTPUT -j PVENAT-OUTPUT"]);
    });
    for (const make of [
      (l: LiveState) => renderRestore({ plan, owners: [], entry: true, live: l }),
      (l: LiveState) => renderFlush(l),
    ]) {
      const before = parseSave(await kernel.save("nat"), await kernel.save("raw"));
      const payload = make(before);
      await kernel.restore(payload);
      const after = parseSave(await kernel.save("nat"), await kernel.save("raw"));
      expect(canonical(replayPayload(before, payload) as LiveState)).toEqual(canonical(after));
    }
  });

  it.each([
    ["a foreign chain", "*nat\n:DOCKER - [0:0]\nCOMMIT\n"],
    ["a rule in a chain it does not know", "*nat\n-A PVENAT-999-DNAT -j RETURN\nCOMMIT\n"],
    ["deleting a jump it never saw", "*nat\n-D PREROUTING -j PVENAT-PREROUTING\nCOMMIT\n"],
    ["no table", ":PVENAT-101-DNAT - [0:0]\n"],
  ])("gives up (null) on %s", (_what, payload) => {
    expect(replayPayload(parseSave("", ""), payload)).toBeNull();
  });
});
