import type { Counters } from "../iptables/counters.js";
import type { Forward, NatPlan } from "../model.js";
import { type Family, renderLabels, type Sample } from "./exposition.js";
import { type DaemonCounters, DURATION_BUCKETS } from "./registry.js";

// pve-nat's metrics as families (SPEC §8): per-forward counters from the live iptables rules,
// forwards by state, and what the daemon counted. Pure; both `pve-nat metrics` and the daemon's
// textfile writer render through here, so the two never differ in names or labels.

export interface MetricsInput {
  /** The plan whose forwards are shown (the daemon's live plan, or the files' plan). */
  plan: NatPlan | null;
  /** Per plan forward (same order): its live counters, or null when none of its rules is live. */
  counters: ReadonlyArray<Counters | null>;
  /** The daemon's counters, or null when no daemon answered. */
  daemon: DaemonCounters | null;
}

const STATES = ["active", "inactive", "conflict", "error"] as const;

/** Labels of one forward. `origin` and `direction` keep two forwards with the same addresses
 *  and ports (an IN and an OUT rule, two OUT rules to different remotes) apart. */
function forwardLabels(f: Forward): Record<string, string> {
  return {
    vmid: f.vmid === null ? "" : String(f.vmid),
    direction: f.direction,
    proto: f.proto ?? "",
    public_address: f.public.address ?? "",
    public_port: f.public.ports ?? "",
    private_address: f.private.address ?? "",
    private_port: f.private.ports ?? "",
    origin: f.origin,
  };
}

type Series = { labels: Record<string, string>; text: string };

/** Each forward's labels and their rendered text, kept per forward object: a plan's forwards
 *  are never changed once handed out (nat/compile.ts), the daemon keeps them from cycle to
 *  cycle, and its textfile writer renders every one of them on each write (at 1000 guests
 *  rendering 20 000 label sets was most of a write's JavaScript, issue 10). */
const seriesOf = new WeakMap<Forward, Series>();

function forwardSeries(f: Forward): Series {
  let s = seriesOf.get(f);
  if (!s) {
    const labels = forwardLabels(f);
    s = { labels, text: renderLabels(labels) };
    seriesOf.set(f, s);
  }
  return s;
}

function forwardSamples(input: MetricsInput): { packets: Sample[]; bytes: Sample[] } {
  // Summed per label set (its text is one-to-one with it): a label set seen twice would be a
  // duplicate series, which scrapers reject for the whole file.
  const byKey = new Map<string, { series: Series; c: Counters }>();
  input.plan?.forwards.forEach((f, i) => {
    const c = input.counters[i];
    if (!c) return;
    const series = forwardSeries(f);
    const prev = byKey.get(series.text);
    if (prev) {
      prev.c = { packets: prev.c.packets + c.packets, bytes: prev.c.bytes + c.bytes };
    } else byKey.set(series.text, { series, c });
  });
  const all = [...byKey.values()];
  return {
    packets: all.map(({ series, c }) => ({
      labels: series.labels,
      labelsText: series.text,
      value: c.packets,
    })),
    bytes: all.map(({ series, c }) => ({
      labels: series.labels,
      labelsText: series.text,
      value: c.bytes,
    })),
  };
}

export function metricFamilies(input: MetricsInput): Family[] {
  const { packets, bytes } = forwardSamples(input);
  const states = new Map<string, number>(STATES.map((s) => [s, 0]));
  for (const f of input.plan?.forwards ?? []) states.set(f.state, (states.get(f.state) ?? 0) + 1);
  const d = input.daemon;
  const families: Family[] = [
    {
      name: "pve_nat_forward_packets_total",
      help: "Packets that matched a forward's NAT rules (first packet of each connection; resets when its chain is rewritten).",
      type: "counter",
      samples: packets,
    },
    {
      name: "pve_nat_forward_bytes_total",
      help: "Bytes of the packets that matched a forward's NAT rules (resets when its chain is rewritten).",
      type: "counter",
      samples: bytes,
    },
    {
      name: "pve_nat_forwards",
      help: "Forwards of this node by state.",
      type: "gauge",
      samples: [...states].map(([state, value]) => ({ labels: { state }, value })),
    },
    {
      name: "pve_nat_daemon_up",
      help: "1 when pve-nat's daemon answered on its bus, else 0.",
      type: "gauge",
      samples: [{ value: d ? 1 : 0 }],
    },
  ];
  if (!d) return families;
  families.push(
    {
      name: "pve_nat_daemon_start_time_seconds",
      help: "Unix time the daemon started.",
      type: "gauge",
      samples: [{ value: d.startTime }],
    },
    {
      name: "pve_nat_last_sync_timestamp_seconds",
      help: "Unix time of the daemon's last successful apply.",
      type: "gauge",
      samples: d.lastSync === null ? [] : [{ value: d.lastSync }],
    },
    {
      name: "pve_nat_applies_total",
      help: "Apply cycles the daemon ran (each at most one iptables-restore).",
      type: "counter",
      samples: [{ value: d.applies }],
    },
    {
      name: "pve_nat_apply_failures_total",
      help: "Apply cycles that failed (the previous state was kept and a full sync retried).",
      type: "counter",
      samples: [{ value: d.applyFailures }],
    },
    {
      name: "pve_nat_apply_duration_seconds",
      help: "Time of one apply cycle: load, decide, render, iptables-restore, conntrack cleanup.",
      type: "histogram",
      buckets: DURATION_BUCKETS,
      series: [d.applyDuration],
    },
    {
      name: "pve_nat_drift_repairs_total",
      help: "Drift checks that found pve-nat's live chains changed by someone else and rewrote them.",
      type: "counter",
      samples: [{ value: d.driftRepairs }],
    },
    {
      name: "pve_nat_bus_requests_total",
      help: "Requests the daemon received on its bus, by type.",
      type: "counter",
      samples: Object.keys(d.busRequests)
        .sort()
        .map((type) => ({ labels: { type }, value: d.busRequests[type] ?? 0 })),
    },
    {
      name: "pve_nat_hook_wait_seconds",
      help: "Time from a hookscript's request to the daemon's reply (what a guest start waits), by phase.",
      type: "histogram",
      buckets: DURATION_BUCKETS,
      series: Object.keys(d.hookWait)
        .sort()
        .map((phase) => ({
          labels: { phase },
          ...(d.hookWait[phase] as DaemonCounters["applyDuration"]),
        })),
    },
  );
  return families;
}
