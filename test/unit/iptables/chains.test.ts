import { describe, expect, it } from "vitest";
import {
  ENTRY_CHAINS,
  isOwnedChain,
  MAX_CHAIN_NAME,
  ownerChain,
  parseOwnerChain,
} from "../../../src/iptables/chains.js";
import type { Owner } from "../../../src/model.js";

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
