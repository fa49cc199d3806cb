// Builds the real CLI bundle once per test file (like scripts/bundle.mjs, into a temp dir) and
// runs it as a child process without blocking the test's event loop (in-test bus servers).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { build } from "esbuild";

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export async function buildBundle(): Promise<{ file: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), "pvenat-cli-"));
  const file = path.join(dir, "pve-nat.cjs");
  await build({
    entryPoints: ["src/main.ts"],
    outfile: file,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    external: ["zeromq"],
    // As scripts/bundle.mjs: import("zeromq") becomes require(), which honours NODE_PATH
    // (ESM resolution would not find zeromq from a temp dir).
    supported: { "dynamic-import": false },
    nodePaths: [path.resolve("node_modules")],
    logLevel: "silent",
  });
  return { file, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function runBundle(
  bundle: string,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 10_000,
): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bundle, ...args], {
      env: { ...process.env, NODE_PATH: path.resolve("node_modules"), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}
