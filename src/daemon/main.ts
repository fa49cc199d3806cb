import { setFlagsFromString } from "node:v8";
import type { Logger } from "pino";
import { type BusServer, startBus } from "../bus/server.js";
import { writePresence } from "../cluster/files.js";
import type { Context } from "../context.js";
import { diagnosticLine } from "../diagnostics.js";
import { EXIT_FAILURE } from "../errors.js";
import { useNativeSpawn } from "../exec.js";
import { type Backend, backendDetector, createRunner, runnerFor } from "../iptables/runner.js";
import { createLogger } from "../log.js";
import { createDaemonMetrics } from "../metrics/registry.js";
import type { Config, NodeInput } from "../model.js";
import {
  addressEvents,
  backendTokenOf,
  dirEventsOf,
  loadNative,
  pidfdsOf,
  statPaths,
} from "../native/addon.js";
import { createAgentCache } from "../pve/agent.js";
import { createNodeSource } from "../pve/cache.js";
import { nodeName, readConfig } from "../pve/node.js";
import { VERSION } from "../version.js";
import { readAdmissions } from "./admission.js";
import { type Applier, createApplier } from "./applier.js";
import { realClock } from "./clock.js";
import { conntrackCleaner } from "./conntrack.js";
import { createDriftCheck } from "./drift.js";
import { createHandler } from "./handler.js";
import { createLifecycle } from "./lifecycle.js";
import { createTrimmer } from "./memory.js";
import { createMetricsWriter, type MetricsWriter } from "./metrics.js";
import { planLoader } from "./plan.js";
import {
  createArpKeeper,
  ensureIpForward,
  fwbrDevices,
  realProcFs,
  setArpIgnore,
} from "./prereq.js";
import { createPresencePublisher } from "./presence.js";
import { createWatcher } from "./watcher.js";

// `pve-nat daemon`: the only writer of pve-nat's iptables state (SPEC §1). Reconciles at
// start, serves the bus, watches sources, repairs drift. SIGTERM/SIGINT stop it and leave every
// rule in place, so a restart or an upgrade never drops a forward.

/** How long the steps after SIGTERM may take before the process exits regardless. */
const SHUTDOWN_DEADLINE_MS = 3000;

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reads pve-nat.conf for the daemon: a bad value refuses to start, an unknown key warns. */
async function daemonConfig(ctx: Context): Promise<{ config: Config; warnings: string[] } | null> {
  const r = await readConfig(ctx.configPath).catch((err: unknown) => {
    process.stderr.write(`pve-nat: ${errText(err)}\n`);
    return null;
  });
  if (r === null) return null;
  if (r.errors.length > 0) {
    for (const d of r.errors) process.stderr.write(`pve-nat: ${diagnosticLine(d)}\n`);
    process.stderr.write("pve-nat: refusing to start with a bad configuration value\n");
    return null;
  }
  const warnings = r.unknownKeys.map(
    (d) => `${diagnosticLine(d)} — ignored; check the key name (the daemon keeps running)`,
  );
  if (!r.exists) warnings.push(`${ctx.configPath} does not exist; using defaults`);
  return { config: r.config, warnings };
}

/** ARP setting on every fwbr device while the plan keeps the zone fix (SPEC §4). */
async function arpAll(applier: Applier, log: Logger): Promise<void> {
  const s = applier.state();
  if (s.paused || !s.plan?.entry.zoneFix) return;
  await setArpIgnore(await fwbrDevices(realProcFs), 1, realProcFs, log);
}

/** The addon is an optimisation (page trimming, batch stat, posix_spawn): a host where it
 *  cannot be written or mapped (a read-only /var/lib, noexec) runs the daemon without it. */
function loadNativeQuiet(log: Logger): ReturnType<typeof loadNative> {
  try {
    return loadNative();
  } catch (err) {
    log.warn(
      { err: errText(err) },
      "native addon unavailable; the daemon keeps its pages, stats with fs.statSync and spawns with child_process",
    );
    return null;
  }
}

function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      resolve(sig);
    };
    const onTerm = () => on("SIGTERM");
    const onInt = () => on("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
  });
}

/** V8 favours memory over speed in the daemon only (issue 10): it grows the old generation in
 *  smaller steps, so garbage from a burst of events is collected instead of kept until the heap
 *  doubles. Measured with `npm run bench -- --footprint` at 1000 guests (nf_tables): heap after
 *  the burst 87 → 44 MB used, peak RSS 185 → 160 MB, same burst and reconcile times. Set here
 *  and not in the executable's start-up options, which every hook process also takes: there it
 *  cost each start ≈ 5 ms. V8 reads this flag when it sizes the heap after each collection, so
 *  setting it once the isolate runs takes effect from the next one. The price: ≈ 0.7 points
 *  more idle CPU at 1000 guests (more frequent old-generation collections).
 *  Measured here and not taken (2026-12-06, 1000 guests, nf_tables, one or two runs each; peak
 *  VmHWM 110-112 MB and idle RSS ≈ 90 MB without them): `--heap-growing-percent=10` (peak
 *  107.8) and `--memory-saver-mode` (108.9), within the run-to-run spread and idle RSS 1-2 MB
 *  higher; `--no-memory-reducer` with one forced full GC (`--expose-gc`) at the page trim 5 s
 *  after the last cycle: that GC cost about what the reducer's two cost in the idle window
 *  (≈ 200 vs 150-250 ms of CPU) and idle RSS went 1.9 MB up; a forced GC after each cycle that
 *  re-expanded ≥ 200 guests (peak 133: the peak is inside the build, not after it).
 *  Re-measured without it (2026-12-06 evening, footprint at 1000 guests, three runs each way):
 *  idle CPU the same (0.9-1.1 %), reconcile and burst 15-35 % faster, idle RSS ≈ 9 MB higher,
 *  and the peak 98-121 MB against 97-100.5: kept for the peak. `--always-sparkplug` (to leave
 *  the interpreter sooner for code that runs once a second): idle CPU the same.
 *  Set once the initial reconcile is done, not at start (2026-12-06, fourth session): that
 *  reconcile is where the flag's cost falls (the JavaScript side of compiling and rendering
 *  1000 guests: median 509 → 402 ms over six runs each, with the same 1 MB semi-spaces; 4 or
 *  16 MB ones changed nothing), while the peak it holds down comes later, with events. */
export const DAEMON_V8_FLAGS = "--optimize-for-size";

export async function runDaemon(ctx: Context): Promise<void> {
  const stopped = untilSignal();
  const loaded = await daemonConfig(ctx);
  if (loaded === null) {
    process.exitCode = EXIT_FAILURE;
    return;
  }
  const { config } = loaded;
  const log = createLogger(config.logLevel);
  for (const w of loaded.warnings) {
    // Loud: in the journal as a warning and on stderr for whoever started it by hand.
    log.warn(`pve-nat.conf: ${w}`);
    process.stderr.write(`pve-nat: warning: ${w}\n`);
  }

  // Only the single executable carries the addon; elsewhere the daemon keeps its pages, stats
  // with fs.statSync and spawns with child_process. Loaded before the first command runs: from
  // here on every command (iptables, conntrack, ip, qm) starts with its posix_spawn, whose cost
  // does not grow with the daemon's RSS as fork()'s does.
  const native = loadNativeQuiet(log);
  if (native) useNativeSpawn(native.spawn);
  // One detector for the daemon's life: it saves a backend's tables again only when the
  // kernel says they changed (the re-detection before each drift check, issue 10).
  const detect = backendDetector(native ? { token: backendTokenOf(native) } : {});
  const runner = await createRunner(config.iptables, detect);
  if (runner.warning) log.warn(runner.warning);
  await ensureIpForward(config.ipForward, realProcFs, log);

  const paths = { path: ctx.path, configPath: ctx.configPath, node: ctx.node };
  const clock = realClock;
  const metrics = createDaemonMetrics(() => clock.wall().getTime() / 1000);
  let writer: MetricsWriter | null = null;
  // nodes/<node>/pve-nat.json in pmxcfs: attach, check and status --cluster on every node read it.
  const presence = createPresencePublisher({
    node: nodeName(ctx, config),
    version: VERSION,
    write: (p) => writePresence(ctx, p),
    clock: realClock,
    log,
  });
  const trimmer = native ? createTrimmer({ drop: () => native.drop(), clock, log }) : null;
  let bus: BusServer | null = null;
  // One reader of the node's files for the daemon's life: what a poll read, an apply reuses.
  // Made before the first read, so no change after it is missed. While public_address is not
  // auto nothing drains it; the kernel drops what does not fit its buffer.
  const addressChanges = native ? addressEvents(native) : null;
  const source = createNodeSource(paths, {
    agent: createAgentCache({ log }),
    ...(native ? { statMany: statPaths(native), readFile: native.readFile } : {}),
    ...(addressChanges ? { addressEvents: addressChanges } : {}),
    ...(native ? { abstractListeners: () => native.abstractListeners() } : {}),
    ...(native ? { pidfds: pidfdsOf(native), dirEvents: dirEventsOf(native) } : {}),
  });
  const overrides = { pending: () => lifecycle.pending(), down: () => lifecycle.down() };
  let lastInput: NodeInput | null = null;
  const applier = createApplier({
    load: planLoader(source, overrides, (input) => {
      lastInput = input;
    }),
    // pve-firewall admits a new forward only at its next update: say so in `applied`.
    admission: (plan, owners, backend) =>
      readAdmissions(plan, lastInput, backend, owners).catch((err: unknown) => {
        log.debug({ err: errText(err) }, "cannot read the filter table for the guest firewall");
        return new Map();
      }),
    runner,
    publish: (e) => {
      bus?.publish(e).catch(() => {});
    },
    log,
    clock,
    conntrack: conntrackCleaner(log),
    ...(native ? { tablesToken: (backend: Backend) => native.tablesToken(backend) } : {}),
    onCycle: (seconds, ok) => {
      metrics.applied(seconds, ok);
      writer?.kick();
      trimmer?.touch();
      if (ok) presence.update(applier.state().plan);
    },
    // iptables = auto: pve-firewall's ExecStartPre may switch the alternative after we started.
    ...(config.iptables === "auto"
      ? {
          redetect: async (current: Backend) => {
            const d = await detect("auto");
            if (d.backend === current) return null;
            if (d.warning) log.warn(d.warning);
            return runnerFor(d.backend, d.warning);
          },
        }
      : {}),
  });
  const lifecycle = createLifecycle({
    applier,
    clock,
    graceMs: config.startGraceMs,
    log,
    onStarted: async (vmid, plan) => {
      if (plan.entry.zoneFix)
        await setArpIgnore(await fwbrDevices(realProcFs, vmid), 1, realProcFs, log);
    },
  });
  const arp = createArpKeeper({
    fs: realProcFs,
    log,
    clock,
    wanted: () => {
      const s = applier.state();
      return !s.paused && s.plan?.entry.zoneFix === true;
    },
    verifyMs: config.driftIntervalMs,
  });
  const watcher = createWatcher({
    fingerprint: async () => {
      await source.refresh({ all: true });
      return source.fingerprint();
    },
    onChange: (c) => {
      for (const vmid of c.vmids) lifecycle.observed(vmid);
      if (applier.state().paused) return;
      // Only what differs from the live chains is rewritten: counters of unchanged chains stay.
      applier.apply({ check: true }).catch((err: unknown) => {
        log.debug({ err: errText(err) }, "watcher apply failed");
      });
    },
    afterPass: (change) => arp.afterPass(change !== null),
    clock,
    intervalMs: config.pollIntervalMs,
    log,
  });
  const drift = createDriftCheck({
    applier,
    clock,
    intervalMs: config.driftIntervalMs,
    log,
    onRepair: () => metrics.driftRepaired(),
  });
  if (config.metricsTextfile !== null) {
    writer = createMetricsWriter({
      file: ctx.path(config.metricsTextfile),
      applier,
      runner,
      metrics,
      clock,
      // Each drift interval, at most 15 s apart (metrics.ts).
      intervalMs: config.driftIntervalMs,
      log,
    });
  }

  try {
    bus = await startBus({
      socket: ctx.path(config.socket),
      eventsSocket: ctx.path(config.eventsSocket),
      handle: createHandler({
        applier,
        lifecycle,
        log,
        metrics,
        afterSync: () => arpAll(applier, log),
        admissions: (plan) =>
          readAdmissions(plan, lastInput, applier.state().backend).catch(() => new Map()),
        afterFlush: async () => {
          await setArpIgnore(await fwbrDevices(realProcFs), 0, realProcFs, log);
        },
      }),
    });
  } catch (err) {
    // Another daemon, or an unusable socket path: never write iptables then.
    log.fatal({ err: errText(err) }, "cannot start the bus");
    process.exitCode = EXIT_FAILURE;
    await applier.stop();
    return;
  }

  // A page cache holding the executable in large folios (a file read whole: `cat`, a backup, a
  // fresh build) is mapped a folio at a touch on a kernel like this machine's (6.18). Asked
  // first: the drop unmaps what it looks at (src/native/pagedrop.c).
  const large = native?.exeLargeFolios();
  // Loading the program touched most of the executable; the reconcile needs a part of it.
  // Given back now, the reconcile's pages and its heap are not resident at the same time. The
  // eviction (which gives them back too) only when the cache holds large folios, or when that
  // cannot be told: every page it drops, the reconcile reads back from disk (≈ 45 ms at 1000
  // guests here).
  let evicted: number | undefined;
  if (large === 0) native?.drop();
  else evicted = native?.evictExe();
  // evicted: 0, or -errno when the eviction failed; absent when none was needed.
  if (large !== undefined) log.debug({ large, evicted }, "executable's page cache");
  const t0 = clock.now();
  let reconciled = false;
  try {
    const r = await applier.apply({ full: true });
    reconciled = true;
    log.info(
      {
        owners: r.rendered.length,
        forwards: r.plan.forwards.length,
        ms: Math.round(clock.now() - t0),
      },
      "reconciled",
    );
  } catch (err) {
    log.error({ err: errText(err) }, "initial reconcile failed; retrying");
  }
  // Only now (see DAEMON_V8_FLAGS): the reconcile runs ≈ 20 % slower under this flag.
  setFlagsFromString(DAEMON_V8_FLAGS);
  // The watcher's baseline is what the reconcile read (its load refreshed every source), or
  // newer for the guests an event queued behind it is re-reading: anything changed after
  // those reads is seen by the first poll. A baseline read of its own before the reconcile
  // was a second pass over every file at start (≈ 25 ms at 1000 guests).
  await watcher.prime(reconciled ? source.fingerprint() : undefined);
  await arpAll(applier, log).catch(() => {});
  await presence.start(applier.state().plan);
  watcher.start();
  drift.start();
  writer?.start();
  await writer?.write();
  log.info(
    {
      pid: process.pid,
      backend: applier.state().backend,
      socket: ctx.path(config.socket),
      spawn: native ? "posix_spawn" : "child_process",
    },
    "ready",
  );

  const sig = await stopped;
  log.info({ signal: sig }, "stopping; iptables rules stay in place");
  // The rules stay whatever happens below, so a shutdown step that hangs (a restore stuck on
  // the xtables lock, a socket that will not close) must not hold the unit in "deactivating".
  setTimeout(() => {
    log.warn({ ms: SHUTDOWN_DEADLINE_MS }, "shutdown took too long; exiting anyway");
    process.exit(0);
  }, SHUTDOWN_DEADLINE_MS).unref();
  watcher.stop();
  drift.stop();
  writer?.stop();
  trimmer?.stop();
  presence.stop();
  lifecycle.stop();
  await applier.stop();
  await bus.close();
  log.info("stopped");
}
