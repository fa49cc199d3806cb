// One VMID rule (src/names.ts) for every stage: a guest the loader reads can always be named on
// the bus, and what the bus refuses the loader never reports as a guest.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseRequest } from "../../../src/bus/protocol.js";
import { isVmid, parseVmid } from "../../../src/names.js";
import { rooted } from "../../../src/paths.js";
import { loadNode } from "../../../src/pve/node.js";
import { confVmid } from "../../../src/pve/nodefiles.js";

let root: string;
const path = (abs: string) => rooted(root, abs);

async function put(abs: string, text: string): Promise<void> {
  await mkdir(dirname(path(abs)), { recursive: true });
  await writeFile(path(abs), text);
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "pvenat-vmid-"));
  await put(
    "/etc/pve-nat/pve-nat.conf",
    "node = pve1\npublic_address = 203.0.113.10\nexternal_interface = pvenat-none0\n",
  );
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("VMIDs below 100", () => {
  it.each([
    ["99", null],
    ["100", 100],
    ["999999999", 999999999],
    ["1000000000", null],
  ])("%s.conf: loader and bus agree (%j)", (text, vmid) => {
    expect(confVmid(`${text}.conf`)).toBe(vmid);
    expect(parseVmid(text)).toBe(vmid);
    const bus = parseRequest(JSON.stringify({ v: 1, type: "guest", vmid: Number(text), up: true }));
    expect("error" in bus).toBe(vmid === null);
    expect(isVmid(Number(text))).toBe(vmid !== null);
  });

  it("a 99.conf is no guest of the node, and the bus refuses vmid 99", async () => {
    await put("/etc/pve/nodes/pve1/qemu-server/99.conf", "name: stray\n");
    await put("/etc/pve/nodes/pve1/lxc/100.conf", "hostname: first\n");
    const input = await loadNode({ path, configPath: path("/etc/pve-nat/pve-nat.conf") });
    expect(Object.keys(input.guests)).toEqual(["100"]);
    expect(parseRequest('{"v":1,"type":"guest","vmid":99,"up":true}')).toEqual({
      error: expect.stringContaining("vmid"),
    });
  });
});
