// Loads zeromq's native addon. In the single executable (Node SEA) the addon is an embedded
// asset: it is written once to a private directory (extract.ts) and mapped with
// process.dlopen. Anywhere else (tests, `node dist/pve-nat.cjs`) zeromq's own loader finds it
// in node_modules. See packaging/README.md for why.
import { unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { getAsset, isSea } from "node:sea";
import { addonDir, type ExtractResult, extractAddon } from "./extract.js";

/** Name of the asset in packaging/sea-config (written by packaging/build.mjs). */
export const ADDON_ASSET = "zeromq.node";

/** Filled in by the SEA bundle (esbuild `define`); undefined in any other build. */
const EMBEDDED_SHA256 = process.env.PVE_NAT_ADDON_SHA256;
const EMBEDDED_SIZE = process.env.PVE_NAT_ADDON_SIZE;

export interface AddonOrigin {
  kind: "embedded" | "node_modules";
  file: string | null;
  written: boolean;
}

let origin: AddonOrigin | null = null;

/** Where the addon of this process came from, once loaded (for `pve-nat self-test`). */
export function addonOrigin(): AddonOrigin | null {
  return origin;
}

export function loadZmqAddon(): unknown {
  if (isSea()) return loadEmbedded();
  const req = createRequire(path.resolve(process.argv[1] ?? "pve-nat"));
  origin = { kind: "node_modules", file: null, written: false };
  return (req("zeromq/lib/load-addon.js") as { default: unknown }).default;
}

function loadEmbedded(): unknown {
  if (!EMBEDDED_SHA256 || !EMBEDDED_SIZE)
    throw new Error("single executable built without addon hash");
  const euid = process.geteuid?.() ?? 0;
  const dir = addonDir({ euid, override: process.env.PVE_NAT_ADDON_DIR, tmpdir: os.tmpdir() });
  const payload = {
    sha256: EMBEDDED_SHA256,
    size: Number(EMBEDDED_SIZE),
    bytes: () => new Uint8Array(getAsset(ADDON_ASSET)),
  };
  let extracted: ExtractResult = extractAddon(payload, dir, euid);
  let exports: unknown;
  try {
    exports = dlopen(extracted.file);
  } catch (err) {
    // Deleted or damaged behind our back (by hand): write a fresh copy once.
    if (extracted.written) throw err;
    rmQuiet(extracted.file);
    extracted = extractAddon(payload, dir, euid);
    exports = dlopen(extracted.file);
  }
  origin = { kind: "embedded", file: extracted.file, written: extracted.written };
  return exports;
}

function dlopen(file: string): unknown {
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
  return mod.exports;
}

function rmQuiet(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
