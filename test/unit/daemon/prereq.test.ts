import { describe, expect, it } from "vitest";
import {
  ARP_SETTLE_MS,
  arpIgnorePath,
  createArpKeeper,
  ensureIpForward,
  fwbrDevices,
  IP_FORWARD,
  type ProcFs,
  setArpIgnore,
} from "../../../src/daemon/prereq.js";
import { fakeClock, silent } from "../../helpers/fixtures.js";

function fakeFs(
  files: Record<string, string>,
  devices: string[],
): ProcFs & { files: Record<string, string> } {
  return {
    files,
    async readFile(p) {
      const v = files[p];
      if (v === undefined) throw Object.assign(new Error(`ENOENT ${p}`), { code: "ENOENT" });
      return v;
    },
    async writeFile(p, t) {
      if (!(p in files)) throw Object.assign(new Error(`ENOENT ${p}`), { code: "ENOENT" });
      files[p] = t;
    },
    async readdir() {
      return devices;
    },
  };
}

describe("prerequisites", () => {
  it.each([
    ["enable", "0\n", "1\n"],
    ["enable", "1\n", "1\n"],
    ["check", "0\n", "0\n"],
    ["ignore", "0\n", "0\n"],
  ] as const)("ip_forward = %s with %j → %j", async (mode, before, after) => {
    const fs = fakeFs({ [IP_FORWARD]: before }, []);
    await ensureIpForward(mode, fs, silent);
    expect(fs.files[IP_FORWARD]).toBe(after);
  });

  it("finds fwbr devices, all or one guest's", async () => {
    const fs = fakeFs({}, [
      "lo",
      "vmbr0",
      "fwbr101i0",
      "fwpr101p0",
      "fwln101i0",
      "fwbr101i1",
      "fwbr1010i0",
      "tap101i0",
    ]);
    expect(await fwbrDevices(fs)).toEqual(["fwbr1010i0", "fwbr101i0", "fwbr101i1"]);
    expect(await fwbrDevices(fs, 101)).toEqual(["fwbr101i0", "fwbr101i1"]);
  });

  it("sets arp_ignore only where it differs and skips devices that vanished", async () => {
    const fs = fakeFs(
      { [arpIgnorePath("fwbr101i0")]: "0\n", [arpIgnorePath("fwbr102i0")]: "1\n" },
      [],
    );
    const changed = await setArpIgnore(["fwbr101i0", "fwbr102i0", "fwbr103i0"], 1, fs, silent);
    expect(changed).toEqual(["fwbr101i0"]);
    expect(fs.files).toEqual({
      [arpIgnorePath("fwbr101i0")]: "1\n",
      [arpIgnorePath("fwbr102i0")]: "1\n",
    });
  });
});

describe("ARP setting after watcher passes", () => {
  /** A ProcFs counting what the keeper lists and reads. */
  function world(devices: string[]) {
    const files: Record<string, string> = {};
    for (const d of devices) files[arpIgnorePath(d)] = "0\n";
    const io = { lists: 0, reads: 0 };
    const fs: ProcFs = {
      async readFile(p) {
        io.reads++;
        const v = files[p];
        if (v === undefined) throw Object.assign(new Error(`ENOENT ${p}`), { code: "ENOENT" });
        return v;
      },
      async writeFile(p, t) {
        files[p] = t;
      },
      async readdir() {
        io.lists++;
        return Object.keys(files).map((f) => f.split("/")[6] as string);
      },
    };
    const add = (d: string) => {
      files[arpIgnorePath(d)] = "0\n";
    };
    const value = (d: string) => files[arpIgnorePath(d)]?.trim();
    return { fs, io, add, value, files };
  }

  function keeper(fs: ProcFs, wanted = () => true) {
    const clock = fakeClock();
    const k = createArpKeeper({ fs, log: silent, clock, wanted, verifyMs: 30_000 });
    /** One pass a second, `n` times. */
    const passes = async (n: number, changed = false) => {
      for (let i = 0; i < n; i++) {
        clock.advance(1000);
        await k.afterPass(changed && i === 0);
      }
    };
    return { k, clock, passes };
  }

  it("quiet passes neither list the devices nor read them; a change's passes set new ones", async () => {
    const w = world(["fwbr101i0", "fwbr102i0"]);
    const { passes } = keeper(w.fs);
    await passes(1);
    expect([w.value("fwbr101i0"), w.value("fwbr102i0")]).toEqual(["1", "1"]);
    const io = { ...w.io };
    await passes(20);
    expect(w.io).toEqual(io);
    // A guest starts (the watcher saw its run state change); its fwbr comes up a little later.
    await passes(1, true);
    w.add("fwbr103i0");
    await passes(3);
    expect(w.value("fwbr103i0")).toBe("1");
    // Only the new device was read.
    expect(w.io.reads).toBe(io.reads + 1);
    // After ARP_SETTLE_MS without a change, quiet again.
    await passes(ARP_SETTLE_MS / 1000);
    const settled = { ...w.io };
    await passes(5);
    expect(w.io).toEqual(settled);
  });

  it("every verifyMs each device is read again: a value someone reset is set back", async () => {
    const w = world(["fwbr101i0", "fwbr102i0"]);
    const { passes } = keeper(w.fs);
    await passes(1);
    w.files[arpIgnorePath("fwbr102i0")] = "0\n";
    await passes(29);
    expect(w.value("fwbr102i0")).toBe("0");
    await passes(1);
    expect(w.value("fwbr102i0")).toBe("1");
  });

  it("nothing while the zone fix is off or the daemon paused; all devices once it is on", async () => {
    const w = world(["fwbr101i0"]);
    let on = false;
    const { passes } = keeper(w.fs, () => on);
    await passes(3, true);
    expect(w.io).toEqual({ lists: 0, reads: 0 });
    expect(w.value("fwbr101i0")).toBe("0");
    on = true;
    await passes(1);
    expect(w.value("fwbr101i0")).toBe("1");
    // Off (a flush set every device back to 0), then on again: every device is set anew.
    on = false;
    await passes(1);
    w.files[arpIgnorePath("fwbr101i0")] = "0\n";
    on = true;
    await passes(1);
    expect(w.value("fwbr101i0")).toBe("1");
  });
});
