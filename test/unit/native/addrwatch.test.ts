// src/native/addrwatch.c: `public_address = auto` is asked again only when the kernel announced
// an IPv4 address change, so the watch must see every address added or removed in the
// namespace it was made in, and nothing else (links come and go with every guest start).
// Checked in a namespace this test creates (SPEC §7); the addon runs there in a small driver
// that answers "changed?" one line at a time, as the daemon's poll asks once a pass.
import {
  type ChildProcessWithoutNullStreams,
  execFileSync,
  spawn,
  spawnSync,
} from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nativeDriver } from "../../helpers/native.js";

const ns = `pvenat-addr-${randomBytes(3).toString("hex")}`;
let disposeDriver = () => {};
let driver: ChildProcessWithoutNullStreams | null = null;
let lines: AsyncIterator<string>;

const DRIVER = `
const mod = { exports: {} };
process.dlopen(mod, process.argv[2]);
const watch = mod.exports.addrWatch();
process.stdout.write("ready\\n");
require("node:readline").createInterface({ input: process.stdin }).on("line", () => {
  process.stdout.write(String(mod.exports.addrChanged(watch)) + "\\n");
});
`;

async function next(): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("driver did not answer within 5 s")), 5000);
  });
  try {
    const r = await Promise.race([lines.next(), timeout]);
    if (r.done) throw new Error("driver exited");
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

async function changed(): Promise<boolean> {
  driver?.stdin.write("?\n");
  return (await next()) === "true";
}

const ip = (...args: string[]) => execFileSync("ip", ["-n", ns, ...args]);

beforeAll(async () => {
  execFileSync("ip", ["netns", "add", ns]);
  const d = nativeDriver(ns, DRIVER);
  disposeDriver = d.dispose;
  const [cmd, ...args] = d.argv as [string, ...string[]];
  driver = spawn(cmd, args);
  lines = createInterface({ input: driver.stdout })[Symbol.asyncIterator]();
  expect(await next()).toBe("ready");
});

afterAll(() => {
  driver?.kill("SIGKILL");
  spawnSync("ip", ["netns", "del", ns]);
  disposeDriver();
});

describe("addrWatch (in a fresh namespace)", () => {
  it("tells of IPv4 addresses added and removed, once each, and not of links", async () => {
    expect(await changed()).toBe(false);
    ip("link", "add", "nat0", "type", "bridge");
    ip("link", "set", "nat0", "up");
    // A link of its own (every guest start adds some): no address moved.
    expect(await changed()).toBe(false);
    ip("addr", "add", "203.0.113.10/24", "dev", "nat0");
    expect(await changed()).toBe(true);
    expect(await changed()).toBe(false);
    ip("addr", "add", "198.51.100.7/24", "dev", "nat0");
    ip("addr", "del", "203.0.113.10/24", "dev", "nat0");
    expect(await changed()).toBe(true);
    expect(await changed()).toBe(false);
    // The interface goes, and its addresses with it.
    ip("link", "del", "nat0");
    expect(await changed()).toBe(true);
    expect(await changed()).toBe(false);
  });

  it("only its own namespace: another namespace's changes are not announced here", async () => {
    // Another namespace this test makes (never the root one): its addresses are not ours.
    const other = `${ns}-b`;
    execFileSync("ip", ["netns", "add", other]);
    try {
      execFileSync("ip", ["-n", other, "link", "add", "nat1", "type", "bridge"]);
      execFileSync("ip", ["-n", other, "addr", "add", "198.51.100.7/24", "dev", "nat1"]);
      expect(await changed()).toBe(false);
    } finally {
      spawnSync("ip", ["netns", "del", other]);
    }
  });
});
