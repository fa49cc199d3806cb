import { describe, expect, it } from "vitest";
import { createTrimmer, TRIM_QUIET_MS } from "../../../src/daemon/memory.js";
import { fakeClock, silent } from "../../helpers/fixtures.js";

describe("page trimmer (issue 10)", () => {
  function setup() {
    const clock = fakeClock();
    let drops = 0;
    const trimmer = createTrimmer({
      drop: () => {
        drops += 1;
        return 1 << 20;
      },
      clock,
      log: silent,
    });
    return { clock, trimmer, drops: () => drops };
  }

  it("drops once, TRIM_QUIET_MS after the last of a stretch of cycles", () => {
    const { clock, trimmer, drops } = setup();
    trimmer.touch();
    clock.advance(TRIM_QUIET_MS - 1);
    trimmer.touch(); // a burst goes on: the drop waits for its end
    clock.advance(TRIM_QUIET_MS - 1);
    expect(drops()).toBe(0);
    clock.advance(1);
    expect(drops()).toBe(1);
    clock.advance(10 * TRIM_QUIET_MS);
    expect(drops()).toBe(1);
  });

  it("each quiet stretch after work gets its own drop", () => {
    const { clock, trimmer, drops } = setup();
    trimmer.touch();
    clock.advance(TRIM_QUIET_MS);
    trimmer.touch();
    clock.advance(TRIM_QUIET_MS);
    expect(drops()).toBe(2);
  });

  it("stop() cancels a pending drop", () => {
    const { clock, trimmer, drops } = setup();
    trimmer.touch();
    trimmer.stop();
    clock.advance(2 * TRIM_QUIET_MS);
    expect(drops()).toBe(0);
  });
});
