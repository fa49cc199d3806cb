// The Prometheus text exposition format (version 0.0.4), as node_exporter's textfile collector
// and `promtool check metrics` read it. Pure: metric families in, text out.
//
// Conventions kept by the callers (collect.ts): names `pve_nat_…`, base units (seconds, bytes),
// counters end in `_total`, a histogram's name ends in its unit.

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels?: Labels;
  /** `labels` as renderLabels() renders them, from a caller that keeps the text between
   *  renders (a forward's: 20 000 series at 1000 guests, rendered on every textfile write). */
  labelsText?: string;
  value: number;
}

export interface HistogramSeries {
  labels?: Labels;
  /** Observations ≤ each bound of the family's `buckets` (cumulative), in the same order. */
  cumulative: readonly number[];
  sum: number;
  count: number;
}

export type Family =
  | { name: string; help: string; type: "counter" | "gauge"; samples: readonly Sample[] }
  | {
      name: string;
      help: string;
      type: "histogram";
      /** Upper bounds, ascending, without +Inf (always added). */
      buckets: readonly number[];
      series: readonly HistogramSeries[];
    };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** HELP text: backslash and newline escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A label value: backslash, double quote and newline escaped. */
export function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Go's float formatting as Prometheus parses it: +Inf, -Inf, NaN, else the shortest decimal. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

/** The `{name="value",…}` part of a sample line ("" without labels); throws on a bad name. */
export function renderLabels(labels: Labels | undefined): string {
  return labelText(labels);
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {});
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return "";
  for (const [k] of pairs) {
    if (!LABEL_NAME.test(k) || k.startsWith("__")) throw new Error(`bad label name ${k}`);
  }
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`;
}

function checkFamily(f: Family): void {
  if (!METRIC_NAME.test(f.name)) throw new Error(`bad metric name ${f.name}`);
  if (f.type === "counter" && !f.name.endsWith("_total")) {
    throw new Error(`counter ${f.name} must end in _total`);
  }
  if (f.type === "histogram") {
    for (let i = 1; i < f.buckets.length; i++) {
      if (!((f.buckets[i] as number) > (f.buckets[i - 1] as number))) {
        throw new Error(`histogram ${f.name}: buckets must ascend`);
      }
    }
  }
}

/** The whole exposition: one `# HELP` and `# TYPE` per family, then its samples. Families with
 *  no samples still get their HELP/TYPE lines (a scraper then knows the metric exists). A bad
 *  name is the caller's bug: it throws. */
export function renderExposition(families: readonly Family[]): string {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of families) {
    checkFamily(f);
    if (seen.has(f.name)) throw new Error(`metric ${f.name} rendered twice`);
    seen.add(f.name);
    out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    if (f.type !== "histogram") {
      for (const s of f.samples)
        out.push(`${f.name}${s.labelsText ?? labelText(s.labels)} ${formatValue(s.value)}`);
      continue;
    }
    for (const s of f.series) {
      if (s.cumulative.length !== f.buckets.length) {
        throw new Error(
          `histogram ${f.name}: ${s.cumulative.length} counts for ${f.buckets.length} buckets`,
        );
      }
      f.buckets.forEach((le, i) => {
        out.push(
          `${f.name}_bucket${labelText(s.labels, ["le", formatValue(le)])} ${formatValue(s.cumulative[i] as number)}`,
        );
      });
      out.push(`${f.name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${formatValue(s.count)}`);
      out.push(`${f.name}_sum${labelText(s.labels)} ${formatValue(s.sum)}`);
      out.push(`${f.name}_count${labelText(s.labels)} ${formatValue(s.count)}`);
    }
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}
