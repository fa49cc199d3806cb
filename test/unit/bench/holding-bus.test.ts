import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { holdingBus } from "../../../bench/lib/bus.js";
import { request } from "../../../src/bus/client.js";

// The bench times a hook event's floor while a hook waits for its answer: the stand-in bus must
// hold the request until the bench answers, and the hook's client must take that answer.
describe("holdingBus", () => {
  let dir = "";
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("holds a hook's request until answered, then the hook gets the answer", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "pve-nat-holding-"));
    const socket = path.join(dir, "bus.sock");
    const bus = await holdingBus(socket);
    try {
      let settled = false;
      const reply = request(socket, { v: 1, type: "hook", vmid: 101, phase: "pre-start" }, 5000);
      void reply.then(() => {
        settled = true;
      });
      const answer = await bus.next(5000);
      expect(answer).not.toBeNull();
      await new Promise((r) => setTimeout(r, 50));
      expect(settled).toBe(false);
      await answer?.("vm101 pre-start: held");
      expect(await reply).toEqual({ v: 1, ok: true, message: "vm101 pre-start: held" });
    } finally {
      bus.close();
    }
  });

  it("gives null when no request comes in time", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "pve-nat-holding-"));
    const bus = await holdingBus(path.join(dir, "bus.sock"));
    try {
      expect(await bus.next(30)).toBeNull();
    } finally {
      bus.close();
    }
  });
});
