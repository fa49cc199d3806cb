import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireLock, LockBusy } from "../../../src/daemon/lock.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "pvenat-lock-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("lock", () => {
  it("is exclusive, written with our pid, and released", async () => {
    const file = path.join(dir, "run/pve-nat/lock");
    const release = await acquireLock(file);
    expect(await readFile(file, "utf8")).toBe(`${process.pid}\n`);
    await expect(acquireLock(file, 150)).rejects.toBeInstanceOf(LockBusy);
    await release();
    const again = await acquireLock(file, 150);
    await again();
  });

  it("takes over a lock whose process is gone", async () => {
    const file = path.join(dir, "lock");
    const child = spawn(process.execPath, ["-e", "0"]);
    await new Promise((r) => child.on("exit", r));
    await writeFile(file, `${child.pid}\n`);
    const release = await acquireLock(file, 150);
    expect(await readFile(file, "utf8")).toBe(`${process.pid}\n`);
    await release();
  });

  it("waits for a live holder and gets the lock once it is released", async () => {
    const file = path.join(dir, "lock");
    const first = await acquireLock(file);
    const second = acquireLock(file, 2000);
    let released = false;
    setTimeout(() => {
      released = true;
      void first();
    }, 120);
    const release = await second;
    // Not before the holder let go, and then it is ours.
    expect(released).toBe(true);
    expect(await readFile(file, "utf8")).toBe(`${process.pid}\n`);
    await release();
  });
});
