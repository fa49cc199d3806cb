// pve-nat's own addon (src/native/*.c), compiled as the package build compiles it, loaded into
// the test process (and the bench's). Compiled once per test file into a temporary directory.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
// @ts-expect-error: plain ESM build script without type declarations
import { compileNative } from "../../packaging/native.mjs";
import type { Native } from "../../src/native/addon.js";

/** Compiles and loads the addon; `dispose` removes the file (the mapping stays loaded). The
 *  bench, bundled to CommonJS where import.meta is empty, names the repo in PVE_NAT_REPO. */
export function loadTestNative(): { native: Native; dispose(): void } {
  const repo = process.env.PVE_NAT_REPO ?? path.resolve(import.meta.dirname, "../..");
  const dir = mkdtempSync(path.join(os.tmpdir(), "pve-nat-native-"));
  const file = path.join(dir, "pve-nat.node");
  compileNative({ repo, out: file });
  const mod = { exports: {} as Native };
  process.dlopen(mod, file);
  return { native: mod.exports, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
