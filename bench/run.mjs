// `npm run bench`: bundles bench/main.ts (TypeScript, sharing src/ modules) with esbuild into
// node_modules/.cache, where `zeromq` still resolves from node_modules, then runs it.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const repo = fileURLToPath(new URL("..", import.meta.url));
const outfile = path.join(repo, "node_modules/.cache/pve-nat-bench/bench.cjs");
await build({
  absWorkingDir: repo,
  entryPoints: ["bench/main.ts"],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  external: ["zeromq"],
  logLevel: "warning",
  // test/helpers/native.ts falls back to import.meta only when PVE_NAT_REPO is unset; the
  // bench sets it.
  logOverride: { "empty-import-meta": "silent" },
});
const child = spawn(process.execPath, [outfile, ...process.argv.slice(2)], {
  stdio: "inherit",
  cwd: repo,
  env: { ...process.env, PVE_NAT_REPO: repo },
});
// The bench cleans up its namespaces on SIGINT/SIGTERM: pass them on and wait for it.
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 130 : 1)));
