// Builds dist/pve-nat.cjs once before the end-to-end tests (unless PVE_NAT_BIN names an installed
// or single-executable pve-nat), so every test runs the same bundle the package ships. A run
// without any end-to-end file (unit tests only) skips the build.
//
// The tests run a private copy (dist/e2e-<random>/, renamed into place): another build or test
// run rewriting dist/pve-nat.cjs meanwhile must not hand a half-written file to a test.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Absolute path of the bundle the e2e tests run (empty: PVE_NAT_BIN or no build). */
    pveNatBundle: string;
  }
}

const E2E_DIR = path.resolve(import.meta.dirname);
const REPO = path.resolve(E2E_DIR, "../..");

export default function setup(project: TestProject): (() => void) | undefined {
  project.provide("pveNatBundle", "");
  if (process.env.PVE_NAT_BIN) return undefined;
  const selected = project.vitest.state.getPaths();
  if (selected.length > 0 && !selected.some((f) => f.startsWith(`${E2E_DIR}/`))) return undefined;
  execFileSync(process.execPath, ["scripts/bundle.mjs"], {
    cwd: REPO,
    stdio: "inherit",
    timeout: 120_000,
  });
  // Inside dist/ so that the bundle's external `zeromq` still resolves from node_modules.
  const dir = path.join(REPO, "dist", `e2e-${randomBytes(4).toString("hex")}`);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "pve-nat.cjs");
  copyFileSync(path.join(REPO, "dist/pve-nat.cjs"), `${file}.tmp`);
  renameSync(`${file}.tmp`, file);
  project.provide("pveNatBundle", file);
  return () => rmSync(dir, { recursive: true, force: true });
}
