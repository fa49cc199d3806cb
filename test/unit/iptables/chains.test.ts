import { describe, expect, it } from "vitest";
import {
  ENTRY_CHAINS,
  isOwnedChain,
  MAX_CHAIN_NAME,
  ownerChain,
  parseOwnerChain,
} from "../../../src/iptables/chains.js";
import type { Owner } from "../../../src/model.js";
import { gc } from "../../helpers/gc.js";

describe("chain names", () => {
  it.each([
    [107, "DNAT", "PVENAT-107-DNAT"],
    [999999999, "SNAT", "PVENAT-999999999-SNAT"],
    ["NODE", "DNAT", "PVENAT-NODE-DNAT"],
  ] as Array<[Owner, "DNAT" | "SNAT", string]>)("%s %s → %s and back", (owner, kind, name) => {
    expect(ownerChain(owner, kind)).toBe(name);
    expect(parseOwnerChain(name)).toEqual({ owner, kind });
    expect(name.length).toBeLessThanOrEqual(MAX_CHAIN_NAME);
  });

  it.each([0, -1, 1.5, 1e10, Number.NaN])("invalid owner %s throws", (owner) => {
    expect(() => ownerChain(owner, "DNAT")).toThrow();
  });

  it.each([
    "PVENAT-107-FOO",
    "PVENAT-0107-DNAT",
    "PVENAT--DNAT",
    "DOCKER",
    "PVENAT-107-DNAT ",
    "pvenat-107-dnat",
  ])("not an owner chain: %s", (name) => {
    expect(parseOwnerChain(name)).toBeNull();
  });

  it("entry chains are owned and fit the limit", () => {
    for (const name of Object.values(ENTRY_CHAINS)) {
      expect(isOwnedChain(name)).toBe(true);
      expect(name.length).toBeLessThanOrEqual(MAX_CHAIN_NAME);
    }
    expect(isOwnedChain("PVEFW-PREROUTING")).toBe(false);
  });
});

describe("the chain-name cache", () => {
  it("keeps no reference to the save text a name was read from", () => {
    // A name read from iptables-save is a slice of the whole text; a cache key holding it kept
    // that text alive for the daemon's life (issue 10). Measured with a forced GC: 32 MB of text,
    // which must go once nothing but the cache has seen it.
    const heap = () => {
      gc();
      return process.memoryUsage().heapUsed;
    };
    const parseOne = (vmid: number) => {
      const text = `${"#".repeat(32 << 20)}\n:PVENAT-${vmid}-DNAT - [0:0]\n`;
      const name = /\n:(\S+) /.exec(text)?.[1] as string;
      expect(parseOwnerChain(name)).toEqual({ owner: vmid, kind: "DNAT" });
    };
    const before = heap();
    parseOne(424242);
    // RegExp's legacy statics (RegExp.input) hold the last subject matched, here a slice of
    // the text: another match lets it go.
    /x/.exec("x");
    const grown = heap() - before;
    expect(grown).toBeLessThan(8 << 20);
    // And the cached entry still answers for the same name.
    expect(parseOwnerChain("PVENAT-424242-DNAT")).toEqual({ owner: 424242, kind: "DNAT" });
  });
});
