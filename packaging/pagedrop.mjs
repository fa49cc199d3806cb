// Compiles src/native/pagedrop.c (issue 10: the daemon gives back its executable's pages) into
// a Node-API addon. Used by build.mjs for the executable and by the addon's own test.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

/**
 * Plain C against Node-API's headers (node-api-headers, from npm ci): no node-gyp, one file;
 * the Node-API symbols resolve in whichever Node loads it (≥ 20).
 * @param {{ repo: string; out: string }} o
 */
export function compilePagedrop({ repo, out }) {
  const include = path.join(repo, "node_modules/node-api-headers/include");
  if (!existsSync(include)) throw new Error("node_modules/node-api-headers missing: run npm ci");
  const flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-fvisibility=hidden"];
  execFileSync(
    "cc",
    [
      ...flags,
      "-DNAPI_VERSION=8",
      "-I",
      include,
      "-o",
      out,
      path.join(repo, "src/native/pagedrop.c"),
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  execFileSync("strip", ["--strip-unneeded", out], { stdio: "ignore" });
}
