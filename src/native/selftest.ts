// `pve-nat self-test` (hidden): proves that this executable can load its zeromq addon and carry
// a message over ipc://, and that its own addon works (page trimming, batch stat, posix_spawn),
// without a daemon. Used by the package tests and by support ("does the binary work on this host?"). It
// imports zeromq itself because it tests the loader.
import { statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Command } from "commander";
import { addonOrigin, loadNative, type Native } from "./addon.js";

export interface SelfTestResult {
  zeromq: string;
  addon: ReturnType<typeof addonOrigin>;
  roundTripMs: number;
  /** Resident bytes the page trimming gave back in this process; null without the addon
   *  (anywhere but the single executable). */
  pagedropBytes: number | null;
  /** statMany agrees with fs.statSync on a file that exists and one that does not; null
   *  without the addon. */
  statMany: boolean | null;
  /** The addon's spawn ran a shell with input and gave back its stdout, stderr and exit code;
   *  null without the addon. */
  spawn: boolean | null;
}

/** Shell builtins only: the package test runs the executable with an empty PATH. */
const SPAWN_SCRIPT = 'while IFS= read -r l; do printf "%s\\n" "$l"; done; echo err >&2; exit 3';

async function spawnWorks(native: Native): Promise<boolean> {
  const input = "pve-nat\nself-test\n";
  const r = await native.spawn("/bin/sh", ["-c", SPAWN_SCRIPT], Buffer.from(input), 5000, 1 << 20);
  return (
    r.error === 0 &&
    r.code === 3 &&
    r.signal === null &&
    !r.timedOut &&
    !r.tooMuch &&
    r.stdout.toString() === input &&
    r.stderr.toString() === "err\n"
  );
}

function statManyAgrees(native: Native, dir: string): boolean {
  const out = new Float64Array(8);
  native.statMany(native.statBatch([dir, path.join(dir, "absent")]), out);
  const st = statSync(dir);
  return (
    out[0] === st.ino &&
    out[1] === st.size &&
    out[2] === st.mtimeMs &&
    out[3] === st.ctimeMs &&
    out[4] === -(os.constants.errno.ENOENT as number)
  );
}

export async function selfTest(): Promise<SelfTestResult> {
  // Loaded on demand so that commands which never touch the bus never map the addon.
  const zmq = await import("zeromq");
  const dir = await mkdtemp(path.join(os.tmpdir(), "pve-nat-selftest-"));
  const endpoint = `ipc://${path.join(dir, "s.sock")}`;
  const rep = new zmq.Reply();
  const req = new zmq.Request({ receiveTimeout: 5000, sendTimeout: 5000 });
  rep.receiveTimeout = 5000;
  try {
    await rep.bind(endpoint);
    req.connect(endpoint);
    const t0 = performance.now();
    await req.send("ping");
    const [msg] = await rep.receive();
    await rep.send(`pong:${msg?.toString() ?? ""}`);
    const [answer] = await req.receive();
    const roundTripMs = performance.now() - t0;
    if (answer?.toString() !== "pong:ping") throw new Error(`unexpected answer ${String(answer)}`);
    const native = loadNative();
    return {
      zeromq: zmq.version,
      addon: addonOrigin(),
      roundTripMs,
      pagedropBytes: native ? native.drop() : null,
      statMany: native ? statManyAgrees(native, dir) : null,
      spawn: native ? await spawnWorks(native) : null,
    };
  } finally {
    req.close();
    rep.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export function register(program: Command): void {
  program
    .command("self-test", { hidden: true })
    .description("load the zeromq addon and send one message over ipc://")
    .action(async () => {
      const result = await selfTest();
      process.stdout.write(`${JSON.stringify(result)}\n`);
    });
}
