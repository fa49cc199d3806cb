// The fast start: main.ts reads `hook`/`notify`/`daemon` argv without commander, exactly as
// commander would, and the hook path loads none of the heavy packages.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command } from "commander";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BusServer, startBus } from "../../../src/bus/server.js";
import { register as registerDaemon } from "../../../src/cli/daemon.js";
import { fastInvocation, GLOBAL_FLAGS } from "../../../src/cli/globals.js";
import { register as registerHook } from "../../../src/cli/hook.js";
import { register as registerNotify } from "../../../src/cli/notify.js";
import type { GlobalOptions } from "../../../src/context.js";
import { runBundle } from "../../helpers/bundle.js";

/** What commander hands the hook/notify/daemon action: the program built as main.ts builds it,
 *  with the real registrations whose actions are replaced by a recorder. */
async function commanderView(
  argv: string[],
): Promise<{ command: string; args: string[]; opts: GlobalOptions } | null> {
  const program = new Command("pve-nat").exitOverride().configureOutput({
    writeOut: () => {},
    writeErr: () => {},
  });
  for (const flag of GLOBAL_FLAGS) program.option(flag.flags, flag.description);
  registerHook(program);
  registerNotify(program);
  registerDaemon(program);
  let seen: { command: string; args: string[]; opts: GlobalOptions } | null = null;
  for (const sub of program.commands) {
    sub.exitOverride().action((...params: unknown[]) => {
      const cmd = params[params.length - 1] as Command;
      seen = { command: cmd.name(), args: cmd.args, opts: cmd.optsWithGlobals<GlobalOptions>() };
    });
  }
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch {
    return null; // commander's own error (unknown option before the subcommand, …)
  }
  return seen;
}

describe("fastInvocation", () => {
  it.each<[string[]]>([
    [["hook", "107", "post-start"]],
    [["hook", "107", "pre-start", "--root", "/r"]],
    [["--root", "/r", "hook", "107", "post-stop"]],
    [["--root=/r", "hook", "107", "post-stop", "--config=/c.conf"]],
    [["hook", "--node", "pve2", "107", "--json", "pre-start"]],
    [["hook", "107", "pre-start", "--bogus"]],
    [["hook", "--bogus", "107", "pre-start", "--root", "/r"]],
    [["hook", "107", "pre-start", "-x", "extra"]],
    [["hook", "107", "pre-start", "--root", "/a", "--root", "/b"]],
    [["hook", "107", "pre-start", "--root", "--json"]],
    [["hook"]],
    [["notify", "reload", "--root", "/r"]],
    [["--config", "/c", "notify", "guest", "107", "up"]],
    [["notify", "guest", "--node", "n", "107", "down", "--weird"]],
    [["daemon"]],
    [["--root", "/r", "daemon"]],
    [["daemon", "--root=/r", "--config", "/c.conf", "--node", "n", "--json"]],
  ])("reads %j as commander does", async (argv) => {
    const fast = fastInvocation(argv);
    expect(fast).not.toBeNull();
    expect(fast).toEqual(await commanderView(argv));
  });

  it.each<[string[]]>([
    [[]],
    [["--version"]],
    [["hook", "107", "pre-start", "--help"]],
    [["hook", "-h"]],
    [["hook", "107", "pre-start", "--version"]],
    [["hook", "--", "107", "pre-start"]],
    [["hook", "107", "pre-start", "--root"]],
    [["hook", "107", "pre-start", "--json=1"]],
    [["--bogus", "hook", "107", "pre-start"]],
    [["check", "--root", "/r"]],
    [["events", "--count", "1"]],
    [["help", "hook"]],
    [["daemon", "extra"]],
    [["daemon", "--bogus"]],
    [["daemon", "--help"]],
  ])("leaves %j to commander", (argv) => {
    expect(fastInvocation(argv)).toBeNull();
  });
});

describe("what the hook path loads", () => {
  let dir: string;
  let bundle: string;
  let bus: BusServer;
  const root = () => path.join(dir, "root");
  // Packages kept out of the bundle here, so that loading them is visible in require.cache.
  const WATCHED = ["commander", "pino", "zeromq"];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "pvenat-startup-"));
    bundle = path.join(dir, "pve-nat.cjs");
    await build({
      entryPoints: ["src/main.ts"],
      outfile: bundle,
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      external: WATCHED,
      // As scripts/bundle.mjs: import() of an external becomes require(), seen in require.cache.
      supported: { "dynamic-import": false },
      logLevel: "silent",
    });
    await writeFile(
      path.join(dir, "preload.cjs"),
      `process.on("exit", () => {
        const names = new Set();
        for (const f of Object.keys(require.cache)) {
          const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f);
          if (m) names.add(m[1]);
        }
        require("node:fs").writeFileSync(process.env.LOADED_FILE, JSON.stringify([...names].sort()));
      });\n`,
    );
    await mkdir(path.join(root(), "etc/pve-nat"), { recursive: true });
    await writeFile(path.join(root(), "etc/pve-nat/pve-nat.conf"), "hook_timeout_ms = 3000\n");
    bus = await startBus({
      socket: path.join(root(), "run/pve-nat/bus.sock"),
      eventsSocket: path.join(root(), "run/pve-nat/events.sock"),
      handle: async (req) => ({ v: 1, ok: true, message: `got ${req.type}` }),
    });
  });

  afterAll(async () => {
    await bus?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function loaded(args: string[]): Promise<{ packages: string[]; stderr: string }> {
    const file = path.join(dir, "loaded.json");
    await rm(file, { force: true });
    const r = await runBundle(bundle, args, {
      NODE_OPTIONS: `--require ${path.join(dir, "preload.cjs")}`,
      LOADED_FILE: file,
    });
    const packages = JSON.parse(await readFile(file, "utf8")) as string[];
    return { packages: packages.filter((p) => WATCHED.includes(p)), stderr: r.stderr };
  }

  // With a daemon to talk to, the hook maps zeromq (the bus is ZeroMQ), but never commander
  // or pino; --version loads nothing.
  it.each<[string, string[], string, string[]]>([
    [
      "hook, daemon up",
      ["hook", "107", "post-start"],
      "pve-nat: vm107 post-start: got hook",
      ["zeromq"],
    ],
    [
      "hook, flags first",
      ["--root", "ROOT", "hook", "107", "pre-start"],
      "pre-start: got hook",
      ["zeromq"],
    ],
    ["notify reload", ["notify", "reload"], "pve-nat: notify reload: got notify", ["zeromq"]],
    ["--version", ["--version"], "", []],
  ])("%s: only what it needs", async (_name, args, said, expected) => {
    const argv = args.map((a) => (a === "ROOT" ? root() : a));
    const withRoot = argv.includes(root()) ? argv : [...argv, "--root", root()];
    const r = await loaded(args[0] === "--version" ? argv : withRoot);
    expect(r.packages).toEqual(expected);
    expect(r.stderr).toContain(said);
  });

  // The probe works: the same measurement sees them when a command needs them.
  it("sees commander when a command needs it", async () => {
    expect((await loaded(["--help"])).packages).toContain("commander");
  });
});
