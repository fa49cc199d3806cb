import { describe, expect, it } from "vitest";
import {
  arpIgnorePath,
  ensureIpForward,
  fwbrDevices,
  IP_FORWARD,
  type ProcFs,
  setArpIgnore,
} from "../../../src/daemon/prereq.js";
import { silent } from "../../helpers/fixtures.js";

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
