// pve-nat's own addon (src/native/*.c), compiled as the package build compiles it, loaded into
// the test process. Compiled once per test file into a temporary directory.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
// @ts-expect-error: plain ESM build script without type declarations
import { compileNative } from "../../packaging/native.mjs";
import type { Native } from "../../src/native/addon.js";

const repo = path.resolve(import.meta.dirname, "../..");

/** Compiles and loads the addon; `dispose` removes the file (the mapping stays loaded). */
export function loadTestNative(): { native: Native; dispose(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "pve-nat-native-"));
  const file = path.join(dir, "pve-nat.node");
  compileNative({ repo, out: file });
  const mod = { exports: {} as Native };
  process.dlopen(mod, file);
  return { native: mod.exports, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
