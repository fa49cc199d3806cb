// Figures the issue asks for, derived from the raw per-count results; the table; the targets.
import { table } from "../../src/cli/format.js";
import type { CountResult } from "./inner.js";
import { r1, r2 } from "./stats.js";

export interface Figures {
  guests: number;
  rules: number;
  /** `hook <vmid> post-start`, as the issue names it (rules already live: check + ack). */
  hook_ms: { p50: number; p95: number; n: number; failures: number };
  /** `hook <vmid> pre-start`: the daemon applies the guest's rules before it acks. */
  hook_pre_start_ms: { p50: number; p95: number; n: number };
  node_e0_ms: { p50: number; p95: number };
  bin_true_ms: { p50: number; p95: number };
  pve_nat_version_ms: { p50: number; p95: number };
  apply_ms: { p50: number; p99: number; n: number; missing: number; budget_hit: boolean };
  apply_outside_ms: { p50: number; p99: number; n: number };
  floor_ms: { p50: number; p99: number; n: number };
  /** apply_ms and floor_ms of the events a hook process sent and of those the bench sent. */
  by_source_ms: Record<
    "hook" | "bus",
    { apply_p50: number; floor_p50: number; apply_over_floor_p50: number; n: number }
  >;
  apply_over_floor: { p50: number; p99: number };
  daemon_cycle_split_p50_ms: CountResult["cycle_split"];
  seed_equivalent_ms: {
    ms: number;
    extrapolated: boolean;
    ratio_to_apply: number;
    rules: number;
    runs_ms: number[];
    flush_ms: number;
    append_first_ms: number;
    append_last_ms: number;
  };
  reconcile_ms: number;
  reconcile_daemon_ms: number;
  reconcile_samples_ms: CountResult["reconcile"]["samples"];
  reconcile_split_ms: CountResult["reconcile"]["split"];
  edit_to_live_ms: {
    p50: number;
    p95: number;
    n: number;
    failures: number;
    budget_hit: boolean;
  };
  burst: CountResult["burst"];
  rss_mb: number;
  rss_detail_mb: CountResult["rss_mb"];
  /** The quiet window after the reconcile: CPU, file calls under /etc/pve, memory. */
  idle: CountResult["idle"];
  /** Issue 9: the idle window with every guest address learned from the PVE IPAM. */
  learned_idle?: CountResult["learned_idle"];
  /** Issue 10: the idle window with qemu guests (pidfile + command line run state). */
  qemu_idle?: CountResult["qemu_idle"];
  memory_after_burst_mb: CountResult["memory_after_burst"];
}

export interface BackendReport {
  backend: "nf_tables" | "legacy";
  counts: Record<string, Figures>;
  growth: {
    from: number;
    to: number;
    apply_p50: number;
    floor_p50: number;
    ratio_to_floor_growth: number;
  } | null;
  daemon_errors: string[];
}

export interface Target {
  backend: string;
  what: string;
  target: string;
  value: string;
  met: boolean;
}

function sourceSplit(s: CountResult["by_source"]["hook"]): Figures["by_source_ms"]["hook"] {
  return {
    apply_p50: s.apply.p50,
    floor_p50: s.floor.p50,
    apply_over_floor_p50: r2(s.apply.p50 / s.floor.p50),
    n: s.apply.n,
  };
}

export function figures(c: CountResult): Figures {
  const ratio = (a: number, b: number) => r2(a / b);
  return {
    guests: c.guests,
    rules: c.rules,
    hook_ms: { p50: c.hook.p50, p95: c.hook.p95, n: c.hook.n, failures: c.hook_failures },
    hook_pre_start_ms: { p50: c.hook_pre.p50, p95: c.hook_pre.p95, n: c.hook_pre.n },
    node_e0_ms: { p50: c.node_e0.p50, p95: c.node_e0.p95 },
    bin_true_ms: { p50: c.bin_true.p50, p95: c.bin_true.p95 },
    pve_nat_version_ms: { p50: c.bin_version.p50, p95: c.bin_version.p95 },
    apply_ms: {
      p50: c.apply.p50,
      p99: c.apply.p99,
      n: c.apply.n,
      missing: c.apply_missing,
      budget_hit: c.apply_budget_hit,
    },
    apply_outside_ms: { p50: c.apply_outside.p50, p99: c.apply_outside.p99, n: c.apply_outside.n },
    floor_ms: { p50: c.floor.p50, p99: c.floor.p99, n: c.floor.n },
    by_source_ms: {
      hook: sourceSplit(c.by_source.hook),
      bus: sourceSplit(c.by_source.bus),
    },
    apply_over_floor: {
      p50: ratio(c.apply.p50, c.floor.p50),
      p99: ratio(c.apply.p99, c.floor.p99),
    },
    daemon_cycle_split_p50_ms: c.cycle_split,
    seed_equivalent_ms: {
      ms: c.seed.ms_p50,
      extrapolated: c.seed.extrapolated,
      ratio_to_apply: r1(c.seed.ms_p50 / c.apply.p50),
      rules: c.seed.rules,
      runs_ms: c.seed.runs_ms,
      flush_ms: c.seed.flush_ms,
      append_first_ms: c.seed.append_first_ms,
      append_last_ms: c.seed.append_last_ms,
    },
    reconcile_ms: c.reconcile.wall_ms,
    reconcile_daemon_ms: c.reconcile.daemon_ms,
    reconcile_samples_ms: c.reconcile.samples,
    reconcile_split_ms: c.reconcile.split,
    edit_to_live_ms: {
      p50: c.edit.p50,
      p95: c.edit.p95,
      n: c.edit.n,
      failures: c.edit_failures,
      budget_hit: c.edit_budget_hit,
    },
    burst: c.burst,
    rss_mb: c.rss_mb.after_burst,
    rss_detail_mb: c.rss_mb,
    idle: c.idle,
    memory_after_burst_mb: c.memory_after_burst,
    ...(c.learned_idle ? { learned_idle: c.learned_idle } : {}),
    ...(c.qemu_idle ? { qemu_idle: c.qemu_idle } : {}),
  };
}

export function backendReport(backend: "nft" | "legacy", counts: CountResult[]): BackendReport {
  const byCount: Record<string, Figures> = {};
  for (const c of counts) byCount[String(c.guests)] = figures(c);
  const sorted = [...counts].sort((a, b) => a.guests - b.guests);
  const lo = sorted[0];
  const hi = sorted.at(-1);
  const growth =
    lo && hi && hi.guests > lo.guests
      ? {
          from: lo.guests,
          to: hi.guests,
          apply_p50: r2(hi.apply.p50 / lo.apply.p50),
          floor_p50: r2(hi.floor.p50 / lo.floor.p50),
          ratio_to_floor_growth: r2(hi.apply.p50 / lo.apply.p50 / (hi.floor.p50 / lo.floor.p50)),
        }
      : null;
  return {
    backend: backend === "nft" ? "nf_tables" : "legacy",
    counts: byCount,
    growth,
    daemon_errors: counts.flatMap((c) => c.daemon_errors),
  };
}

export function targets(reports: readonly BackendReport[]): Target[] {
  const out: Target[] = [];
  const ms = (x: number) => `${r1(x)} ms`;
  for (const rep of reports) {
    const b = rep.backend;
    const counts = Object.values(rep.counts).sort((x, y) => x.guests - y.guests);
    const big = counts.at(-1);
    for (const f of counts) {
      out.push(...footprintTargets(b, f, big));
      // --footprint runs no hooks, events or edits.
      if (f.apply_ms.n === 0 && f.hook_ms.n === 0) continue;
      const limit = f.node_e0_ms.p50 + f.floor_ms.p50 + 25;
      out.push({
        backend: b,
        what: `hook post-start p50 @${f.guests}`,
        target: `≤ node -e 0 p50 + floor p50 + 25 ms = ${ms(limit)}`,
        value: ms(f.hook_ms.p50),
        met: f.hook_ms.p50 <= limit && f.hook_ms.failures === 0,
      });
      out.push({
        backend: b,
        what: `hook pre-start p50 @${f.guests}`,
        target: `≤ ${ms(limit)} (same bound; this hook waits for a restore)`,
        value: ms(f.hook_pre_start_ms.p50),
        met: f.hook_pre_start_ms.p50 <= limit && f.hook_ms.failures === 0,
      });
      out.push({
        backend: b,
        what: `apply p50 @${f.guests}`,
        target: `≤ 1.3 × floor p50 = ${ms(1.3 * f.floor_ms.p50)}`,
        value: `${ms(f.apply_ms.p50)} (${f.apply_over_floor.p50}×)`,
        met: f.apply_ms.p50 <= 1.3 * f.floor_ms.p50 && f.apply_ms.missing === 0,
      });
      out.push({
        backend: b,
        what: `apply p99 @${f.guests}`,
        target: `≤ 1.3 × floor p99 = ${ms(1.3 * f.floor_ms.p99)}`,
        value: `${ms(f.apply_ms.p99)} (${f.apply_over_floor.p99}×)`,
        met: f.apply_ms.p99 <= 1.3 * f.floor_ms.p99,
      });
      out.push({
        backend: b,
        what: `edit→live p95 @${f.guests}`,
        target: "≤ 2000 ms",
        value: ms(f.edit_to_live_ms.p95),
        met: f.edit_to_live_ms.p95 <= 2000 && f.edit_to_live_ms.failures === 0,
      });
    }
    if (rep.growth && Number.isFinite(rep.growth.apply_p50)) {
      const g = rep.growth;
      out.push({
        backend: b,
        what: `apply growth ${g.from}→${g.to}`,
        target: `≤ 1.2 × floor growth (${g.floor_p50}×) = ${r2(1.2 * g.floor_p50)}×`,
        value: `${g.apply_p50}×`,
        met: g.apply_p50 <= 1.2 * g.floor_p50,
      });
    }
    if (big && Number.isFinite(big.seed_equivalent_ms.ms)) {
      const at = `@${big.guests}`;
      out.push({
        backend: b,
        what: `seed-equivalent ÷ apply ${at}`,
        target: "≥ 100",
        value: `${big.seed_equivalent_ms.ratio_to_apply}${big.seed_equivalent_ms.extrapolated ? " (extrapolated)" : ""}`,
        met: big.seed_equivalent_ms.ratio_to_apply >= 100,
      });
      out.push({
        backend: b,
        what: `reconcile ${at}`,
        target: "≤ 1000 ms",
        value: `${ms(big.reconcile_ms)} (daemon's own: ${ms(big.reconcile_daemon_ms)}; median of ${big.reconcile_samples_ms.wall_ms.length} starts, ${ms(Math.min(...big.reconcile_samples_ms.wall_ms))}-${ms(Math.max(...big.reconcile_samples_ms.wall_ms))})`,
        met: big.reconcile_ms <= 1000,
      });
      out.push({
        backend: b,
        what: `burst ${at}`,
        target: "≤ 3000 ms, 0 lost",
        value: `${ms(big.burst.total_ms)}, ${big.burst.lost} lost`,
        met: big.burst.total_ms <= 3000 && big.burst.lost === 0,
      });
    }
  }
  return out;
}

/** File calls under /etc/pve an idle daemon may make per second at N guests, polling every
 *  `pollMs`: one stat per guest .fw per poll (pmxcfs keeps no change counter for
 *  firewall/*.fw, and edit→live must stay within 2 s), plus a constant few (.vmlist,
 *  pve-nat.conf, cluster.fw, host.fw, the guest directories when .vmlist changed). Compared
 *  with what pmxcfs already serves pve-firewall on the same node: every 10 s it opens and
 *  reads cluster.fw, host.fw and each guest's .fw and config, (2 + 2N)/10 opens a second, each
 *  a lookup + open + read(s) + release into pmxcfs (≈ 4 requests, ≈ 0.8·(1+N)/s in all); a
 *  stat is one getattr answered from pmxcfs's memory, no data. So the bound is the same order
 *  as pve-firewall's own load (N + 10 vs ≈ 0.8·N requests/s), and opens stay near zero. */
export function fsCallBound(guests: number, pollMs: number): number {
  return ((guests + 10) * 1000) / pollMs;
}

/** Opens per second allowed while idle: .vmlist (pmxcfs's guest list) once per 1 s poll, the
 *  only file read while nothing changes. */
export const IDLE_OPENS_PER_S = 2;

/** pve-firewall's own opens per second under /etc/pve at N local guests (its 10 s cycle). */
export function pveFirewallOpensPerS(guests: number): number {
  return (2 + 2 * guests) / 10;
}

/** Issue 10: memory, idle CPU and file calls. `big` is the largest count of the run. */
function footprintTargets(b: string, f: Figures, big: Figures | undefined): Target[] {
  const out: Target[] = [];
  const at = `@${f.guests}`;
  if (f.guests === 10) {
    out.push({
      backend: b,
      what: `RSS idle ${at}`,
      target: "≤ 60 MB",
      value: `${f.rss_detail_mb.idle} MB`,
      met: f.rss_detail_mb.idle <= 60,
    });
  }
  if (f === big) {
    out.push({
      backend: b,
      what: `RSS peak ${at}`,
      target: "≤ 100 MB (VmHWM: reconcile, events, burst)",
      value: `${f.rss_detail_mb.peak} MB (after burst ${f.rss_mb} MB)`,
      met: f.rss_detail_mb.peak <= 100,
    });
    out.push({
      backend: b,
      what: `idle CPU ${at}`,
      target: "≤ 0.5 % of a core",
      value: `${r2(f.idle.cpu_s_per_s * 100)} % (${f.idle.window_s} s from ${settleText(f.idle)}; its children, the drift check's table reads: ${r2(f.idle.children_cpu_s_per_s * 100)} %)`,
      met: f.idle.cpu_s_per_s <= 0.005,
    });
    const bound = fsCallBound(f.guests, 1000);
    const opens = f.idle.fs?.per_s.open ?? Number.NaN;
    out.push({
      backend: b,
      what: `stat+open/s under /etc/pve ${at}`,
      target: `≤ N + 10 per 1 s poll = ${bound}/s, opens ≤ ${IDLE_OPENS_PER_S}/s (pve-firewall: ${pveFirewallOpensPerS(f.guests)} opens/s)`,
      value: f.idle.fs
        ? `${f.idle.fs.stat_open_per_s}/s, ${opens} opens/s (all calls ${f.idle.fs.total_per_s}/s)`
        : "no strace",
      met: f.idle.fs !== null && f.idle.fs.stat_open_per_s <= bound && opens <= IDLE_OPENS_PER_S,
    });
  }
  return out;
}

const p = (a: number, b: number) => `${a} / ${b}`;

/** Where the quiet window began, and what the daemon spent before it (results before the
 *  settling stretch existed have none). */
function settleText(idle: Figures["idle"]): string {
  if (!idle.settle) return "2 s after the reconcile";
  return `${r1(idle.settle.window_s + 2)} s after the reconcile, which used ${r2(idle.settle.cpu_s_per_s * 100)} % until then`;
}

export function renderTables(reports: readonly BackendReport[]): string {
  const rows: string[][] = [];
  const rows2: string[][] = [];
  for (const rep of reports) {
    for (const f of Object.values(rep.counts).sort((x, y) => x.guests - y.guests)) {
      rows.push([
        rep.backend,
        String(f.guests),
        p(f.hook_ms.p50, f.hook_ms.p95),
        p(f.hook_pre_start_ms.p50, f.hook_pre_start_ms.p95),
        `${f.node_e0_ms.p50} / ${f.bin_true_ms.p50} / ${f.pve_nat_version_ms.p50}`,
        `${p(f.apply_ms.p50, f.apply_ms.p99)}${f.apply_ms.budget_hit ? ` (n=${f.apply_ms.n})†` : ""}`,
        p(f.floor_ms.p50, f.floor_ms.p99),
        p(f.apply_over_floor.p50, f.apply_over_floor.p99),
        `${f.seed_equivalent_ms.ms}${f.seed_equivalent_ms.extrapolated ? "*" : ""}`,
        `${f.seed_equivalent_ms.ratio_to_apply}×`,
      ]);
      rows2.push([
        rep.backend,
        String(f.guests),
        p(f.reconcile_ms, f.reconcile_daemon_ms),
        `${p(f.edit_to_live_ms.p50, f.edit_to_live_ms.p95)}${f.edit_to_live_ms.budget_hit ? ` (n=${f.edit_to_live_ms.n})†` : ""}`,
        `${f.burst.total_ms} (${f.burst.events} ev${f.burst.cycles === null ? "" : `, ${f.burst.cycles} restores`})`,
        String(f.burst.lost),
        String(f.rss_mb),
        `${f.rss_detail_mb.idle} / ${f.rss_detail_mb.peak}`,
        memText(f.idle.memory),
        `${r2(f.idle.cpu_s_per_s * 100)} %${f.idle.settle ? ` (settling ${r2(f.idle.settle.cpu_s_per_s * 100)} %)` : ""}`,
        f.idle.fs ? `${f.idle.fs.stat_open_per_s} / ${f.idle.fs.total_per_s}` : "-",
        f.daemon_cycle_split_p50_ms.n > 0
          ? [
              f.daemon_cycle_split_p50_ms.load_ms,
              f.daemon_cycle_split_p50_ms.render_ms,
              f.daemon_cycle_split_p50_ms.restore_ms,
            ].join(" / ")
          : "(--debug-log)",
      ]);
    }
  }
  const t1 = table(
    [
      "backend",
      "guests",
      "hook post-start p50/p95",
      "hook pre-start p50/p95",
      "node -e 0 / true / pve-nat --version p50",
      "apply p50/p99",
      "floor p50/p99",
      "apply÷floor p50/p99",
      "seed-equiv",
      "seed÷apply",
    ],
    rows,
  );
  const t2 = table(
    [
      "backend",
      "guests",
      "reconcile wall/daemon",
      "edit→live p50/p95",
      "burst all live",
      "lost",
      "RSS MB",
      "RSS idle / peak",
      "idle MB: anon/file; heap used/total, ext, code",
      "idle CPU",
      "idle /etc/pve stat+open / all per s",
      "daemon load/render/restore p50",
    ],
    rows2,
  );
  const growth = reports
    .filter((r) => r.growth)
    .map(
      (r) =>
        `${r.backend}: apply p50 growth ${r.growth?.from}→${r.growth?.to} guests ${r.growth?.apply_p50}×, floor's own growth ${r.growth?.floor_p50}×`,
    );
  const bySource = reports.flatMap((r) =>
    Object.values(r.counts).flatMap((f) => {
      const { hook, bus } = f.by_source_ms;
      if (hook.n + bus.n === 0) return [];
      const side = (s: typeof hook) =>
        `${s.apply_p50} / ${s.floor_p50} (${s.apply_over_floor_p50}×, ${s.n})`;
      return [
        `${r.backend} ${f.guests} guests, apply / floor p50 by sender: hook ${side(hook)}, bus ${side(bus)}`,
      ];
    }),
  );
  // The extra idle windows' lines share their figures: reconcile, idle CPU, file calls, RSS.
  const windowFigures = (w: { reconcile_ms: number; idle: Figures["idle"] }) => {
    const fs = w.idle.fs ? `${w.idle.fs.stat_open_per_s} stat+open/s under /etc/pve` : "-";
    return `reconcile ${w.reconcile_ms} ms, idle CPU ${r2(w.idle.cpu_s_per_s * 100)} %, ${fs}, RSS ${w.idle.memory.rss} MB`;
  };
  const learned = reports.flatMap((r) =>
    Object.values(r.counts).flatMap((f) => {
      const l = f.learned_idle;
      if (!l) return [];
      return [
        `${r.backend}: ${l.guests} guests, addresses learned from the PVE IPAM (${l.guests_live} live, the rest share an address): ${windowFigures(l)}`,
      ];
    }),
  );
  const qemu = reports.flatMap((r) =>
    Object.values(r.counts).flatMap((f) => {
      const q = f.qemu_idle;
      if (!q) return [];
      return [
        `${r.backend}: ${q.guests} qemu guests (stand-ins with ${q.cmdline_bytes}-byte command lines): ${windowFigures(q)}`,
      ];
    }),
  );
  return [
    "All times in ms (medians/percentiles; run counts in bench/results.json). * = extrapolated;",
    "† = time budget for that loop used up before the issue's minimum run count (each event took too long).",
    t1,
    "",
    t2,
    "",
    ...growth,
    ...bySource,
    ...learned,
    ...qemu,
  ].join("\n");
}

function memText(m: Figures["idle"]["memory"]): string {
  return `${m.anon ?? "?"}/${m.file ?? "?"}; ${m.heap_used ?? "?"}/${m.heap_total ?? "?"}, ${m.external ?? "?"}, ${m.code ?? "?"}`;
}

export function renderTargets(ts: readonly Target[]): string {
  return table(
    ["", "backend", "figure", "target", "measured"],
    ts.map((t) => [t.met ? "met" : "MISSED", t.backend, t.what, t.target, t.value]),
  );
}
