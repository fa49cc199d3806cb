// Compiles pve-nat's own addon (src/native/*.c: the daemon's page trimming, batch stat,
// posix_spawn and the tables' change token, issue 10) into a Node-API addon. Used by build.mjs
// for the executable and by the addon's own tests.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

export const NATIVE_SOURCES = [
  "module.c",
  "addrwatch.c",
  "dirwatch.c",
  "pagedrop.c",
  "pidfd.c",
  "readfile.c",
  "spawn.c",
  "statmany.c",
  "tables.c",
  "unixlisten.c",
];

/**
 * Plain C against Node-API's headers (node-api-headers, from npm ci): no node-gyp; the
 * Node-API symbols resolve in whichever Node loads it (≥ 20).
 * @param {{ repo: string; out: string }} o
 */
export function compileNative({ repo, out }) {
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
      ...NATIVE_SOURCES.map((f) => path.join(repo, "src/native", f)),
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  execFileSync("strip", ["--strip-unneeded", out], { stdio: "ignore" });
}
