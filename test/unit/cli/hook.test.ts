// The hook, notify and events commands run as the real bundle (a child process), against no
// daemon or an in-test bus server with a fake handler.
import { execFileSync, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { BusEvent, Reply, Request } from "../../../src/bus/protocol.js";
import { type BusServer, startBus } from "../../../src/bus/server.js";
import { buildBundle, runBundle } from "../../helpers/bundle.js";

let bundle: string;
let cleanup: () => Promise<void>;
let root: string;
let server: BusServer | null = null;

beforeAll(async () => {
  ({ file: bundle, cleanup } = await buildBundle());
});

afterAll(async () => {
  await cleanup();
});

afterEach(async () => {
  await server?.close();
  server = null;
  if (root) await rm(root, { recursive: true, force: true });
});

async function newRoot(conf?: string): Promise<string> {
  root = await mkdtemp(path.join(tmpdir(), "pvenat-root-"));
  if (conf !== undefined) {
    await mkdir(path.join(root, "etc/pve-nat"), { recursive: true });
    await writeFile(path.join(root, "etc/pve-nat/pve-nat.conf"), conf);
  }
  return root;
}

const pveNat = (args: string[], env: Record<string, string> = {}) => runBundle(bundle, args, env);

async function daemon(dir: string, handle: (req: Request) => Promise<Reply>): Promise<BusServer> {
  server = await startBus({
    socket: path.join(dir, "run/pve-nat/bus.sock"),
    eventsSocket: path.join(dir, "run/pve-nat/events.sock"),
    handle,
  });
  return server;
}

const HOOK_TIMEOUT_MS = 1500; // SPEC §5 default

describe("pve-nat hook", () => {
  it("exits 0 at once and says so when no daemon runs", async () => {
    const dir = await newRoot();
    const r = await pveNat(["hook", "107", "pre-start", "--root", dir]);
    expect(r).toMatchObject({
      code: 0,
      stdout: "",
      stderr: "pve-nat: daemon not running; forwards for vm107 will be applied when it starts\n",
    });
    expect(r.ms).toBeLessThan(HOOK_TIMEOUT_MS + 500);
  });

  it.each<[string, string[]]>([
    ["no arguments", []],
    ["vmid only", ["107"]],
    ["vmid not a number", ["abc", "pre-start"]],
    ["vmid below 100", ["99", "pre-start"]],
    ["unknown phase", ["107", "pre-migrate"]],
    ["extra argument", ["107", "pre-start", "extra"]],
    ["unknown option", ["107", "pre-start", "--bogus"]],
  ])("exits 0 with one clear line for bad arguments: %s", async (_name, args) => {
    const dir = await newRoot();
    const r = await pveNat(["hook", ...args, "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^pve-nat: hook: expected <vmid> <pre-start\|post-start\|pre-stop\|post-stop>, got .*; nothing done\n$/,
    );
  });

  it("passes the event to the daemon and prints its reply", async () => {
    const dir = await newRoot();
    const seen: Request[] = [];
    await daemon(dir, async (req) => {
      seen.push(req);
      return { v: 1, ok: true, message: "3 forwards live" };
    });
    const r = await pveNat(["hook", "107", "post-start", "--root", dir], {
      PVE_MIGRATED_FROM: "pve2",
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^pve-nat: vm107 post-start: 3 forwards live \(\d+ ms\)\n$/);
    expect(seen).toEqual([
      { v: 1, type: "hook", vmid: 107, phase: "post-start", migratedFrom: "pve2" },
    ]);
  });

  it("reports the daemon's error reply and still exits 0", async () => {
    const dir = await newRoot();
    await daemon(dir, async () => ({
      v: 1,
      ok: false,
      error: "firewall/107.fw:4: no address\nfor net0",
    }));
    const r = await pveNat(["hook", "107", "pre-start", "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^pve-nat: vm107 pre-start: daemon reported an error: firewall\/107.fw:4: no address for net0 \(\d+ ms\)\n$/,
    );
  });

  it("gives up after hook_timeout_ms from the config and exits 0", async () => {
    const dir = await newRoot("hook_timeout_ms = 300\n");
    await daemon(dir, () => new Promise<Reply>(() => {}));
    const r = await pveNat(["hook", "107", "pre-start", "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      "pve-nat: vm107 pre-start: no answer from the daemon within 300 ms; it will catch up on its own\n",
    );
    expect(r.ms).toBeLessThan(300 + 500);
  });

  it("uses the socket named in the config, under --root", async () => {
    const dir = await newRoot("socket = /srv/bus.sock\nevents_socket = /srv/ev.sock\n");
    server = await startBus({
      socket: path.join(dir, "srv/bus.sock"),
      eventsSocket: path.join(dir, "srv/ev.sock"),
      handle: async () => ({ v: 1, ok: true, message: "found me" }),
    });
    const r = await pveNat(["hook", "107", "post-stop", "--root", dir]);
    expect(r.stderr).toMatch(/^pve-nat: vm107 post-stop: found me \(\d+ ms\)\n$/);
  });

  it("falls back to defaults when the config is broken, and says so", async () => {
    const dir = await newRoot("[main]\nhook_timeout_ms = soon\n");
    await daemon(dir, async () => ({ v: 1, ok: true, message: "ok" }));
    const r = await pveNat(["hook", "107", "post-start", "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^pve-nat: vm107 post-start: ok \(\d+ ms\) \(.*pve-nat.conf has errors; using defaults for them\)\n$/,
    );
  });

  it("still reaches the daemon when the config cannot be read", async () => {
    const dir = await newRoot();
    await daemon(dir, async () => ({ v: 1, ok: true, message: "ok" }));
    // A directory where the file should be: EISDIR.
    const r = await pveNat(["hook", "107", "post-start", "--root", dir, "--config", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^pve-nat: vm107 post-start: ok \(\d+ ms\) \(cannot read .* \(EISDIR\); using defaults\)\n$/,
    );
  });

  it("reaches the daemon without loading node:net, node:crypto or perf_hooks", async () => {
    // Each costs a guest start milliseconds of module loading (issue 10): net is loaded only for
    // a socket file nobody answers on, crypto only when the addon is extracted, and timing uses
    // process.hrtime. A preload writes the builtins the process loaded, as it exits.
    const dir = await newRoot();
    await daemon(dir, async () => ({ v: 1, ok: true, message: "ok" }));
    const preload = path.join(dir, "loaded.cjs");
    const list = path.join(dir, "loaded.json");
    await writeFile(
      preload,
      `process.on("exit", () => require("fs").writeFileSync(${JSON.stringify(list)}, JSON.stringify(process.moduleLoadList)));\n`,
    );
    const r = await pveNat(["hook", "107", "post-start", "--root", dir], {
      NODE_OPTIONS: `--require ${preload}`,
    });
    expect(r.stderr).toMatch(/^pve-nat: vm107 post-start: ok \(\d+ ms\)\n$/);
    const loaded = JSON.parse(await readFile(list, "utf8")) as string[];
    expect(loaded).toContain("NativeModule fs");
    for (const m of ["net", "crypto", "perf_hooks"])
      expect(loaded, m).not.toContain(`NativeModule ${m}`);
  });

  it("says at once that the daemon is not running when its socket file is stale", async () => {
    const dir = await newRoot();
    // What `kill -9` of the daemon leaves: a socket file nobody listens on (made by perl, as
    // Node and zeromq unlink theirs on close).
    const socket = path.join(dir, "run/pve-nat/bus.sock");
    await mkdir(path.dirname(socket), { recursive: true });
    execFileSync("perl", [
      "-MIO::Socket::UNIX",
      "-e",
      "IO::Socket::UNIX->new(Local => $ARGV[0], Listen => 1) or die $!",
      socket,
    ]);
    const r = await pveNat(["hook", "107", "post-start", "--root", dir]);
    expect(r).toMatchObject({
      code: 0,
      stderr: "pve-nat: daemon not running; forwards for vm107 will be applied when it starts\n",
    });
    expect(r.ms).toBeLessThan(HOOK_TIMEOUT_MS);
  });

  it("pre-stop asks nothing of the daemon", async () => {
    const dir = await newRoot();
    let calls = 0;
    await daemon(dir, async () => {
      calls++;
      return { v: 1, ok: true, message: "?" };
    });
    const r = await pveNat(["hook", "107", "pre-stop", "--root", dir]);
    expect(r).toMatchObject({ code: 0, stderr: "pve-nat: vm107 pre-stop: nothing to do\n" });
    expect(calls).toBe(0);
  });
});

describe("pve-nat notify", () => {
  it.each<[string[], Request, string]>([
    [["reload"], { v: 1, type: "notify", what: "reload" }, "notify reload"],
    [["guest", "107", "up"], { v: 1, type: "guest", vmid: 107, up: true }, "notify vm107 up"],
    [["guest", "108", "down"], { v: 1, type: "guest", vmid: 108, up: false }, "notify vm108 down"],
  ])("%j sends %j", async (args, expected, what) => {
    const dir = await newRoot();
    const seen: Request[] = [];
    await daemon(dir, async (req) => {
      seen.push(req);
      return { v: 1, ok: true, message: "queued" };
    });
    const r = await pveNat(["notify", ...args, "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^pve-nat: ${what}: queued \\(\\d+ ms\\)\\n$`));
    expect(seen).toEqual([expected]);
  });

  it.each([
    [[]],
    [["restart"]],
    [["guest", "107"]],
    [["guest", "107", "sideways"]],
    [["reload", "now"]],
  ])("exits 0 for bad arguments %j", async (args) => {
    const dir = await newRoot();
    const r = await pveNat(["notify", ...args, "--root", dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^pve-nat: notify: expected `notify reload` or `notify guest <vmid> up\|down`, got .*; nothing done\n$/,
    );
  });

  it("exits 0 when the daemon is down", async () => {
    const dir = await newRoot();
    const r = await pveNat(["notify", "reload", "--root", dir]);
    expect(r).toMatchObject({
      code: 0,
      stderr: "pve-nat: notify reload: daemon not running; it reads everything when it starts\n",
    });
  });
});

describe("pve-nat events", () => {
  it("prints published events as JSON lines", async () => {
    const dir = await newRoot();
    const srv = await daemon(dir, async () => ({ v: 1, ok: true, message: "" }));
    const child = pveNat(["events", "--count", "2", "--root", dir]);
    const applied: BusEvent = {
      type: "applied",
      ts: "2026-11-25T14:00:00.000Z",
      vmid: 107,
      rules: 3,
      ms: 4.2,
    };
    const removed: BusEvent = {
      type: "removed",
      ts: "2026-11-25T14:00:05.000Z",
      vmid: 107,
      rules: 3,
      ms: 1.5,
      message: "stopped",
    };
    // PUB/SUB drops events sent before the subscriber is connected: keep publishing (bounded)
    // until the child has printed its two.
    let done = false;
    void child.then(() => {
      done = true;
    });
    for (let i = 0; i < 400 && !done; i++) {
      await srv.publish(i % 2 === 0 ? applied : removed);
      await new Promise((r) => setTimeout(r, 10));
    }
    const r = await child;
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(3); // two lines and the final newline
    expect(lines[2]).toBe("");
    // Exactly SPEC §6's shape: key order, no protocol field.
    const shapes = [
      '{"type":"applied","ts":"2026-11-25T14:00:00.000Z","vmid":107,"rules":3,"ms":4.2}',
      '{"type":"removed","ts":"2026-11-25T14:00:05.000Z","vmid":107,"rules":3,"ms":1.5,"message":"stopped"}',
    ];
    // Two consecutive events of the alternating stream: one of each, in either order.
    expect(lines.slice(0, 2).sort()).toEqual(shapes.sort());
  });

  it("streams events without --count until stopped", async () => {
    const dir = await newRoot();
    const srv = await daemon(dir, async () => ({ v: 1, ok: true, message: "" }));
    const child = spawn(process.execPath, [bundle, "events", "--root", dir], {
      env: { ...process.env, NODE_PATH: path.resolve("node_modules") },
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
    let exited: number | null | undefined;
    const closed = new Promise<void>((r) =>
      child.on("close", (code) => {
        exited = code;
        r();
      }),
    );
    const event: BusEvent = {
      type: "conflict",
      ts: "2026-11-25T15:00:00.000Z",
      vmid: 108,
      rules: 0,
      ms: 0.3,
      message: "port 822 taken",
    };
    try {
      // Bounded: publish until the subscriber (connecting after its start) prints a line.
      for (let i = 0; i < 400 && !stdout.includes("\n") && exited === undefined; i++) {
        await srv.publish(event);
        await new Promise((r) => setTimeout(r, 10));
      }
      // Still running after its first event: no --count means no limit.
      expect({ exited, stderr }).toEqual({ exited: undefined, stderr: "" });
      expect(stdout.split("\n")[0]).toBe(
        '{"type":"conflict","ts":"2026-11-25T15:00:00.000Z","vmid":108,"rules":0,"ms":0.3,"message":"port 822 taken"}',
      );
    } finally {
      child.kill("SIGTERM");
      await closed;
    }
  });

  it.each([["0"], ["-1"], ["1.5"], ["many"], [""]])(
    "refuses --count %j with exit 2",
    async (count) => {
      const dir = await newRoot();
      const r = await pveNat(["events", "--count", count, "--root", dir]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({
        code: 2,
        stderr: "pve-nat: --count needs a positive whole number\n",
      });
    },
  );
});
