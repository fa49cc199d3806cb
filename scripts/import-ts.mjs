// Loads one of this repository's TypeScript modules from plain Node (>= 20, which cannot strip
// types): esbuild bundles it into node_modules/.cache/pve-nat-ts/ (where bare imports still
// resolve from node_modules), then it is imported. For the demo and the dev scripts.
import { mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const repo = fileURLToPath(new URL("..", import.meta.url));

/** Bundles rel (e.g. "test/helpers/simnode.ts"); returns the ES module's absolute path. */
export async function bundleTs(rel) {
  const outfile = path.join(repo, "node_modules/.cache/pve-nat-ts", rel.replace(/\.ts$/, ".mjs"));
  const out = await build({
    absWorkingDir: repo,
    entryPoints: [rel],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    packages: "external",
    write: false,
    logLevel: "warning",
  });
  // Written aside and renamed: another run loading the same module never reads half a file.
  await mkdir(path.dirname(outfile), { recursive: true });
  const tmp = `${outfile}.${process.pid}`;
  await writeFile(tmp, out.outputFiles[0].contents);
  await rename(tmp, outfile);
  return outfile;
}

/** importTs("test/helpers/simnode.ts") → that module's exports. */
export async function importTs(rel) {
  return import(pathToFileURL(await bundleTs(rel)).href);
}
