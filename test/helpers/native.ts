// pve-nat's own addon (src/native/*.c), compiled as the package build compiles it, loaded into
// the test process (and the bench's). Compiled once per test file into a temporary directory.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
// @ts-expect-error: plain ESM build script without type declarations
import { compileNative } from "../../packaging/native.mjs";
import type { Native } from "../../src/native/addon.js";

/** The addon compiled as the package build compiles it, into a fresh temporary directory. The
 *  bench, bundled to CommonJS where import.meta is empty, names the repo in PVE_NAT_REPO. */
function compileToTemp(prefix: string): { dir: string; addon: string } {
  const repo = process.env.PVE_NAT_REPO ?? path.resolve(import.meta.dirname, "../..");
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const addon = path.join(dir, "pve-nat.node");
  compileNative({ repo, out: addon });
  return { dir, addon };
}

/** Compiles and loads the addon; `dispose` removes the file (the mapping stays loaded). */
export function loadTestNative(): { native: Native; dispose(): void } {
  const { dir, addon } = compileToTemp("pve-nat-native-");
  const mod = { exports: {} as Native };
  process.dlopen(mod, addon);
  return { native: mod.exports, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The addon and a fresh temporary directory for the enclosing describe block: made before its
 *  tests, both removed after them. Read `native` and `dir` inside the tests. */
export function nativeWithTempDir(prefix: string): {
  readonly native: Native;
  readonly dir: string;
} {
  let loaded: { native: Native; dispose(): void } | null = null;
  let dir: string | null = null;
  beforeAll(() => {
    loaded = loadTestNative();
    dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => {
    loaded?.dispose();
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get native(): Native {
      if (loaded === null) throw new Error("nativeWithTempDir: read before beforeAll ran");
      return loaded.native;
    },
    get dir(): string {
      if (dir === null) throw new Error("nativeWithTempDir: read before beforeAll ran");
      return dir;
    },
  };
}

/** The addon compiled into a temporary directory with `driver` (CommonJS; the addon's path is
 *  its argv[2]) beside it, and the command that runs the driver inside namespace `ns`: for the
 *  native tests that need the kernel state of a namespace they created (SPEC §7). */
export function nativeDriver(ns: string, driver: string): { argv: string[]; dispose(): void } {
  const { dir, addon } = compileToTemp("pve-nat-driver-");
  writeFileSync(path.join(dir, "driver.cjs"), driver);
  return {
    argv: ["ip", "netns", "exec", ns, process.execPath, path.join(dir, "driver.cjs"), addon],
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
