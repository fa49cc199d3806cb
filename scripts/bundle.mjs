// Bundles src/main.ts into one CommonJS file (SEA runs CommonJS only). zeromq stays external
// here: the dev bundle loads it from node_modules; packaging/ swaps in the embedded loader.
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

await build({
  entryPoints: ["src/main.ts"],
  outfile: "dist/pve-nat.cjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  external: ["zeromq"],
  sourcemap: "inline",
  logLevel: "warning",
  define: { "process.env.PVE_NAT_VERSION": JSON.stringify(version) },
});
