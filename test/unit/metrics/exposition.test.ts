import { describe, expect, it } from "vitest";
import { metricFamilies } from "../../../src/metrics/collect.js";
import {
  escapeHelp,
  escapeLabelValue,
  formatValue,
  renderExposition,
} from "../../../src/metrics/exposition.js";
import {
  createDaemonMetrics,
  DURATION_BUCKETS,
  parseDaemonCounters,
} from "../../../src/metrics/registry.js";
import { makePlan } from "../../helpers/fixtures.js";

describe("Prometheus text exposition", () => {
  it.each([
    ["plain", "plain"],
    ['a "quoted" value', 'a \\"quoted\\" value'],
    ["back\\slash", "back\\\\slash"],
    ["two\nlines", "two\\nlines"],
  ])("label value %j → %j", (raw, escaped) => {
    expect(escapeLabelValue(raw)).toBe(escaped);
  });

  it("HELP escapes backslash and newline, not quotes", () => {
    expect(escapeHelp('a\\b\n"c"')).toBe('a\\\\b\\n"c"');
  });

  it.each([
    [0, "0"],
    [12, "12"],
    [0.25, "0.25"],
    [1.5e21, "1.5e+21"],
    [Number.POSITIVE_INFINITY, "+Inf"],
    [Number.NaN, "NaN"],
  ])("value %s → %s", (v, text) => {
    expect(formatValue(v)).toBe(text);
  });

  it("renders HELP, TYPE, labels and a histogram with _bucket/_sum/_count", () => {
    const text = renderExposition([
      {
        name: "x_requests_total",
        help: "Requests.",
        type: "counter",
        samples: [
          { labels: { type: "hook" }, value: 3 },
          { labels: { type: 'we"ird' }, value: 1 },
        ],
      },
      { name: "x_up", help: "Up.", type: "gauge", samples: [{ value: 1 }] },
      {
        name: "x_wait_seconds",
        help: "Wait.",
        type: "histogram",
        buckets: [0.1, 1],
        series: [{ labels: { phase: "pre-start" }, cumulative: [1, 2], sum: 0.75, count: 3 }],
      },
    ]);
    expect(text).toBe(
      [
        "# HELP x_requests_total Requests.",
        "# TYPE x_requests_total counter",
        'x_requests_total{type="hook"} 3',
        'x_requests_total{type="we\\"ird"} 1',
        "# HELP x_up Up.",
        "# TYPE x_up gauge",
        "x_up 1",
        "# HELP x_wait_seconds Wait.",
        "# TYPE x_wait_seconds histogram",
        'x_wait_seconds_bucket{phase="pre-start",le="0.1"} 1',
        'x_wait_seconds_bucket{phase="pre-start",le="1"} 2',
        'x_wait_seconds_bucket{phase="pre-start",le="+Inf"} 3',
        'x_wait_seconds_sum{phase="pre-start"} 0.75',
        'x_wait_seconds_count{phase="pre-start"} 3',
        "",
      ].join("\n"),
    );
  });

  it.each([
    ["a counter without _total", { name: "x_requests", help: "", type: "counter", samples: [] }],
    ["a bad metric name", { name: "x-y", help: "", type: "gauge", samples: [] }],
    [
      "a bad label name",
      { name: "x", help: "", type: "gauge", samples: [{ labels: { "a-b": "1" }, value: 1 }] },
    ],
    [
      "descending buckets",
      { name: "x_seconds", help: "", type: "histogram", buckets: [1, 0.5], series: [] },
    ],
  ] as const)("refuses %s", (_what, family) => {
    expect(() => renderExposition([family])).toThrow();
  });

  it("refuses the same family twice (a scraper would reject the whole file)", () => {
    const f = { name: "x", help: "", type: "gauge" as const, samples: [] };
    expect(() => renderExposition([f, f])).toThrow(/twice/);
  });
});

describe("daemon counters", () => {
  it("count applies, failures, repairs, requests; histograms are cumulative", () => {
    let now = 1000;
    const m = createDaemonMetrics(() => now);
    m.applied(0.004, true);
    now = 1010;
    m.applied(0.3, false);
    m.driftRepaired();
    m.busRequest("hook");
    m.busRequest("hook");
    m.busRequest("status");
    m.hookWaited("pre-start", 0.02);
    const s = m.snapshot();
    expect(s).toMatchObject({
      startTime: 1000,
      lastSync: 1000,
      applies: 2,
      applyFailures: 1,
      driftRepairs: 1,
      busRequests: { hook: 2, status: 1 },
    });
    const le = (b: number) => DURATION_BUCKETS.indexOf(b);
    expect(s.applyDuration.cumulative[le(0.005)]).toBe(1);
    expect(s.applyDuration.cumulative[le(0.25)]).toBe(1);
    expect(s.applyDuration.cumulative[le(0.5)]).toBe(2);
    expect(s.applyDuration.count).toBe(2);
    expect(s.applyDuration.sum).toBeCloseTo(0.304);
    expect(s.hookWait["pre-start"]?.cumulative[le(0.025)]).toBe(1);
    // A snapshot is a copy: later counts do not change it.
    m.busRequest("hook");
    expect(s.busRequests.hook).toBe(2);
    expect(parseDaemonCounters(JSON.parse(JSON.stringify(s)))).toEqual(s);
  });

  it.each([
    ["not an object", 3],
    ["a missing field", { startTime: 1 }],
    ["a negative count", { ...createDaemonMetrics(() => 1).snapshot(), applies: -1 }],
    [
      "a histogram of the wrong length",
      {
        ...createDaemonMetrics(() => 1).snapshot(),
        applyDuration: { cumulative: [1], sum: 1, count: 1 },
      },
    ],
  ])("a reply with %s is not used", (_what, v) => {
    expect(parseDaemonCounters(v)).toBeNull();
  });
});

describe("pve-nat's metric families", () => {
  const plan = makePlan([
    { vmid: 101, port: 8101 },
    { vmid: 102, port: 8102, state: "inactive" },
  ]);

  it("per-forward counters carry the forward's labels; forwards without live rules have none", () => {
    const text = renderExposition(
      metricFamilies({ plan, counters: [{ packets: 5, bytes: 300 }, null], daemon: null }),
    );
    const f = plan.forwards[0];
    const labels =
      `vmid="101",direction="in",proto="tcp",public_address="${f?.public.address}",public_port="8101",` +
      `private_address="${f?.private.address}",private_port="${f?.private.ports}",origin="${f?.origin}"`;
    expect(text).toContain(`pve_nat_forward_packets_total{${labels}} 5\n`);
    expect(text).toContain(`pve_nat_forward_bytes_total{${labels}} 300\n`);
    expect(text).not.toContain('vmid="102"');
    expect(text).toContain('pve_nat_forwards{state="active"} 1\n');
    expect(text).toContain('pve_nat_forwards{state="inactive"} 1\n');
    expect(text).toContain('pve_nat_forwards{state="conflict"} 0\n');
    expect(text).toContain("pve_nat_daemon_up 0\n");
    expect(text).not.toContain("pve_nat_applies_total");
  });

  it("a plan rendered again (the daemon's next write) reads as a fresh copy of it", () => {
    // collect.ts keeps each forward's label text per forward object; the values are new.
    const render = (p: typeof plan, packets: number) =>
      renderExposition(
        metricFamilies({
          plan: p,
          counters: [
            { packets, bytes: packets * 60 },
            { packets: 1, bytes: 60 },
          ],
          daemon: null,
        }),
      );
    const first = render(plan, 5);
    const again = render(plan, 7);
    expect(again).toBe(render(structuredClone(plan), 7));
    expect(again).not.toBe(first);
    expect(again).toContain("} 7\n");
  });

  it("two forwards with the same labels are one series (their sum)", () => {
    const twin = { ...plan, forwards: [plan.forwards[0], plan.forwards[0]] } as typeof plan;
    const text = renderExposition(
      metricFamilies({
        plan: twin,
        counters: [
          { packets: 1, bytes: 10 },
          { packets: 2, bytes: 20 },
        ],
        daemon: null,
      }),
    );
    expect(text.match(/^pve_nat_forward_packets_total\{.*\} 3$/gm)).toHaveLength(1);
  });

  it("with the daemon's counters: applies, failures, duration histogram, requests, start time", () => {
    const m = createDaemonMetrics(() => 1_700_000_000);
    m.applied(0.012, true);
    m.busRequest("hook");
    m.hookWaited("post-start", 0.03);
    const text = renderExposition(
      metricFamilies({ plan, counters: [null, null], daemon: m.snapshot() }),
    );
    for (const line of [
      "pve_nat_daemon_up 1",
      "pve_nat_daemon_start_time_seconds 1700000000",
      "pve_nat_applies_total 1",
      "pve_nat_apply_failures_total 0",
      'pve_nat_apply_duration_seconds_bucket{le="0.01"} 0',
      'pve_nat_apply_duration_seconds_bucket{le="0.025"} 1',
      'pve_nat_apply_duration_seconds_bucket{le="+Inf"} 1',
      "pve_nat_apply_duration_seconds_count 1",
      "pve_nat_drift_repairs_total 0",
      'pve_nat_bus_requests_total{type="hook"} 1',
      'pve_nat_hook_wait_seconds_bucket{phase="post-start",le="0.05"} 1',
      "# TYPE pve_nat_hook_wait_seconds histogram",
    ]) {
      expect(text.split("\n")).toContain(line);
    }
    // Every name is pve-nat's, and every sample line belongs to a declared family.
    const declared = [...text.matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]);
    for (const line of text.split("\n").filter((l) => l && !l.startsWith("#"))) {
      const name = line.split(/[{ ]/)[0] as string;
      expect(name.startsWith("pve_nat_")).toBe(true);
      expect(
        declared.some((d) => name === d || name.replace(/_(bucket|sum|count)$/, "") === d),
      ).toBe(true);
    }
  });
});
