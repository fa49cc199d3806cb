// Bundles src/main.ts into one CommonJS file (SEA runs CommonJS only). zeromq stays external
// in the dev bundle (dist/pve-nat.cjs loads it from node_modules); the single-executable bundle
// (packaging/build.mjs → bundle({ sea })) takes zeromq in and swaps its addon loader for
// src/native/load-addon.ts, which reads the addon from the executable.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const repo = fileURLToPath(new URL("..", import.meta.url));
const { version } = JSON.parse(readFileSync(path.join(repo, "package.json"), "utf8"));

/** zeromq/lib/native.js does `require("./load-addon")`; that one import is redirected. */
const zeromqAddonLoader = {
  name: "pve-nat-zeromq-addon",
  setup(b) {
    b.onResolve({ filter: /^\.\/load-addon(\.js)?$/ }, (args) => {
      const fromZeromq = args.importer.split(path.sep).join("/").includes("/node_modules/zeromq/");
      if (!fromZeromq) return undefined;
      return { path: path.join(repo, "src/native/load-addon.ts") };
    });
  },
};

/**
 * @typedef {{ sha256: string; size: number }} Embedded
 * @param {{ entry?: string; outfile?: string; sea?: { zeromq: Embedded; native: Embedded } }} [opts]
 *   sea: hash and size of each addon embedded as an asset (packaging/build.mjs).
 */
export async function bundle(opts = {}) {
  const sea = opts.sea;
  const define = { "process.env.PVE_NAT_VERSION": JSON.stringify(version) };
  if (sea) {
    for (const [name, a] of [
      ["ADDON", sea.zeromq],
      ["NATIVE", sea.native],
    ]) {
      define[`process.env.PVE_NAT_${name}_SHA256`] = JSON.stringify(a.sha256);
      define[`process.env.PVE_NAT_${name}_SIZE`] = JSON.stringify(String(a.size));
    }
  }
  const result = await build({
    absWorkingDir: repo,
    entryPoints: [opts.entry ?? "src/main.ts"],
    outfile: opts.outfile ?? "dist/pve-nat.cjs",
    bundle: true,
    platform: "node",
    target: sea ? "node24" : "node20",
    format: "cjs",
    external: sea ? [] : ["zeromq"],
    // `await import("zeromq")` (loaded on first use) becomes a require() of the external
    // package: CommonJS, no ESM loader to start. Bundled modules are deferred either way.
    supported: { "dynamic-import": false },
    plugins: sea ? [zeromqAddonLoader] : [],
    // No inline map: V8 would read and scan it (2+ MB) on every start. The dev bundle links
    // dist/pve-nat.cjs.map (used with `node --enable-source-maps`); the executable has none.
    sourcemap: sea ? false : "linked",
    // No keepNames: it wraps every function created at run time in a defineProperty of its
    // name (the compile creates closures per rule), ≈ 3 % of a 1000-guest reconcile's CPU, and
    // nothing reads a function's name (logs carry messages, not constructor names).
    metafile: Boolean(sea),
    logLevel: "warning",
    define,
  });
  if (sea) assertRedirected(result.metafile);
  return result;
}

/** A zeromq upgrade that renames load-addon.js would silently bundle its disk loader. */
function assertRedirected(metafile) {
  const inputs = Object.keys(metafile.inputs);
  if (!inputs.includes("src/native/load-addon.ts")) {
    throw new Error("zeromq's addon loader was not redirected to src/native/load-addon.ts");
  }
  const leaked = inputs.filter((f) => /cmake-ts|zeromq\/lib\/load-addon/.test(f));
  if (leaked.length > 0) throw new Error(`disk-based addon loader bundled: ${leaked.join(", ")}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await bundle();
}
