import { describe, expect, it } from "vitest";
import { evenlySpaced } from "../../../bench/lib/stats.js";

// The bench's hook events: their bound takes the floor p50 of the whole apply stage, so they
// must be spread over it, not bunched at its start.
describe("evenlySpaced", () => {
  const picks = (picked: number, total: number) =>
    Array.from({ length: total }, (_, i) => i).filter((i) => evenlySpaced(i, picked, total));

  it("picks exactly as many as asked, for the full and the quick bench", () => {
    expect(picks(52, 205)).toHaveLength(52);
    expect(picks(8, 30)).toHaveLength(8);
    expect(picks(0, 30)).toEqual([]);
    expect(picks(30, 30)).toHaveLength(30);
  });

  it("spreads them over the whole stage, each quarter getting its share", () => {
    const at = picks(52, 205);
    for (let q = 0; q < 4; q++) {
      const inQuarter = at.filter((i) => i >= (q * 205) / 4 && i < ((q + 1) * 205) / 4);
      expect(inQuarter.length).toBeGreaterThanOrEqual(12);
      expect(inQuarter.length).toBeLessThanOrEqual(14);
    }
    expect(at.at(-1)).toBe(204);
    const gaps = at.slice(1).map((v, k) => v - (at[k] as number));
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(3);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(4);
  });
});
