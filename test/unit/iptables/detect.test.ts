// src/iptables/runner.ts backendDetector: the daemon re-detects the backend before every drift
// check; a backend's tables are saved again only when the kernel's token for them moved, and
// the answer is the one a fresh detection would give. The reads are replaced here (counted);
// the real token is tested in test/unit/native/tables.test.ts, the real saves in runner.test.ts.
import { describe, expect, it } from "vitest";
import { type Backend, backendDetector, backendOfBinary } from "../../../src/iptables/runner.js";

function world() {
  const w = {
    selected: "nft" as Backend,
    pvefw: { nft: false, legacy: false } as Record<Backend, boolean | null>,
    token: { nft: "nft:1", legacy: "legacy-tables:1" } as Record<Backend, string | null>,
    saves: [] as Backend[],
  };
  const detect = backendDetector({
    token: (b) => w.token[b],
    selected: async () => w.selected,
    hasPveFirewall: async (b) => {
      w.saves.push(b);
      return w.pvefw[b];
    },
  });
  const fresh = backendDetector({
    selected: async () => w.selected,
    hasPveFirewall: async (b) => w.pvefw[b],
  });
  return { w, detect, fresh };
}

describe("backendDetector", () => {
  it("saves a backend again only when its token moved", async () => {
    const { w, detect } = world();
    w.pvefw.nft = true;
    expect(await detect("auto")).toEqual({ backend: "nft" });
    expect(w.saves).toEqual(["nft"]);
    // The idle drift checks: the same tokens, no save.
    for (let i = 0; i < 5; i++) expect(await detect("auto")).toEqual({ backend: "nft" });
    expect(w.saves).toEqual(["nft"]);
    // pve-firewall left nft and wrote its chains to legacy: both tokens moved.
    w.pvefw = { nft: false, legacy: true };
    w.token = { nft: "nft:2", legacy: "legacy-tables:2" };
    const moved = await detect("auto");
    expect(moved.backend).toBe("legacy");
    expect(moved.warning).toContain("PVEFW- chains are in legacy");
    expect(w.saves).toEqual(["nft", "nft", "legacy"]);
    expect(await detect("auto")).toEqual(moved);
    expect(w.saves).toHaveLength(3);
    // The alternative switched to legacy: no token moved, no save needed to tell.
    w.selected = "legacy";
    expect(await detect("auto")).toEqual({ backend: "legacy" });
    expect(w.saves).toHaveLength(3);
  });

  it("without a token, or after a failed save, reads every time", async () => {
    const { w, detect } = world();
    w.token = { nft: null, legacy: "legacy-tables:1" };
    w.pvefw = { nft: null, legacy: false };
    expect(await detect("auto")).toEqual({ backend: "nft" });
    expect(await detect("auto")).toEqual({ backend: "nft" });
    // nft has no token; legacy's save is kept.
    expect(w.saves).toEqual(["nft", "legacy", "nft"]);
    w.token.nft = "nft:1";
    await detect("auto");
    await detect("auto");
    // nft's save failed (null): asked again, not kept as "no chains".
    expect(w.saves).toEqual(["nft", "legacy", "nft", "nft", "nft"]);
    w.pvefw.nft = true;
    await detect("auto");
    await detect("auto");
    expect(w.saves).toEqual(["nft", "legacy", "nft", "nft", "nft", "nft"]);
  });

  it("answers as a fresh detection over random changes", async () => {
    const { w, detect, fresh } = world();
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const both: Backend[] = ["nft", "legacy"];
    let gen = 0;
    for (let i = 0; i < 300; i++) {
      const step = rnd(4);
      if (step === 0) w.selected = both[rnd(2)] as Backend;
      if (step === 1) {
        // A change in one backend's tables moves its token (maybe pve-firewall's chains too).
        const b = both[rnd(2)] as Backend;
        w.pvefw[b] = rnd(2) === 0;
        w.token[b] = `${b}:${++gen}`;
      }
      expect(await detect("auto")).toEqual(await fresh("auto"));
    }
    expect(await detect("nft")).toEqual({ backend: "nft" });
    expect(await detect("legacy")).toEqual({ backend: "legacy" });
  });
});

describe("backendOfBinary", () => {
  it.each([
    ["/usr/sbin/xtables-nft-multi", "nft"],
    ["/usr/sbin/xtables-legacy-multi", "legacy"],
    ["/tmp/bin/iptables", null],
    ["/usr/sbin/iptables-wrapper", null],
  ])("%s → %s", (file, backend) => {
    expect(backendOfBinary(file)).toBe(backend);
  });
});
