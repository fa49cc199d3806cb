import { describe, expect, it } from "vitest";
// renderSync's `after` is what the applier keeps as the live state instead of reading it back
// (or parsing its own payload): it must equal what iptables-save shows once the payload is in.
import { renderRestore, renderSync } from "../../../src/iptables/render.js";
import { type LiveState, parseSave } from "../../../src/iptables/save.js";
import type { Owner } from "../../../src/model.js";
import { type GuestSpec, makePlan } from "../../helpers/fixtures.js";
import { simKernel } from "../../helpers/sim-kernel.js";

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

describe("renderSync's after", () => {
  it("after every restore equals what iptables-save then shows", async () => {
    const kernel = simKernel(FOREIGN);
    for (const step of STEPS) {
      const before = parseSave(await kernel.save("nat"), await kernel.save("raw"));
      const plan = makePlan(step.guests, { zoneFix: step.zoneFix ?? false });
      const sync = renderSync({ plan, owners: step.owners, entry: step.entry, live: before });
      expect(sync.payload, step.what).not.toBe("");
      await kernel.restore(sync.payload);
      const after = parseSave(await kernel.save("nat"), await kernel.save("raw"));
      expect(canonical(sync.after), step.what).toEqual(canonical(after));
    }
  });

  it("follows a jump repair (missing and duplicated jumps)", async () => {
    const kernel = simKernel(FOREIGN);
    const plan = makePlan([{ vmid: 101, port: 8101 }]);
    await kernel.restore(
      renderRestore({ plan, owners: [101], entry: true, live: parseSave("", "") }),
    );
    kernel.edit("nat", (c) => {
      c.set("PREROUTING", ["-A PREROUTING -i vmbr9 -j RETURN"]);
      c.set("OUTPUT", ["-A OUTPUT -j PVENAT-OUTPUT", "-A OUTPUT -j PVENAT-OUTPUT"]);
    });
    const before = parseSave(await kernel.save("nat"), await kernel.save("raw"));
    const sync = renderSync({ plan, owners: [], entry: false, live: before });
    expect(sync.payload).toContain("-I PREROUTING 1 -j PVENAT-PREROUTING");
    await kernel.restore(sync.payload);
    const after = parseSave(await kernel.save("nat"), await kernel.save("raw"));
    expect(canonical(sync.after)).toEqual(canonical(after));
  });
});
