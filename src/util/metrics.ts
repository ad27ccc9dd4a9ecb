// Prometheus metrics for `/metrics` on the admin endpoint: counters, duration histograms, and
// gauges read at scrape time, written in the text exposition format (version 0.0.4). One
// registry per process (`metrics`), so any layer can count without being handed one. Label
// sets are bounded: past MAX_SERIES_PER_METRIC a metric folds new label sets into one series.
import { assert } from "./assert";

export type Labels = Readonly<Record<string, string>>;

/** Seconds; from 1 ms (a local metadata op) to 30 s (a large body over a slow link). */
export const DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;
/** Distinct label sets kept per metric. */
export const MAX_SERIES_PER_METRIC = 256;
const OVERFLOW_LABELS: Labels = { overflow: "true" };

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function formatLabels(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

/** Series keyed by their label set, bounded. */
class SeriesMap<T> {
  private readonly series = new Map<string, { labels: Labels; value: T }>();
  /**
   * The series of label objects already seen, by identity: hot paths pass the same label
   * object on every call (e.g. one per S3 endpoint), and its JSON text was most of what an
   * increment cost. A label object is never changed once used (the series keeps it too).
   */
  private readonly byObject = new WeakMap<Labels, T>();
  constructor(private readonly make: () => T) {}

  at(labels: Labels): T {
    const known = this.byObject.get(labels);
    if (known !== undefined) return known;
    const key = JSON.stringify(labels);
    let s = this.series.get(key);
    if (!s) {
      // Past the bound every new label set shares one overflow series (the one extra allowed).
      if (this.series.size >= MAX_SERIES_PER_METRIC && labels !== OVERFLOW_LABELS) return this.at(OVERFLOW_LABELS);
      s = { labels, value: this.make() };
      this.series.set(key, s);
    }
    this.byObject.set(labels, s.value);
    return s.value;
  }

  entries(): { labels: Labels; value: T }[] {
    return [...this.series.values()];
  }
}

interface Metric {
  readonly name: string;
  render(out: string[]): void;
}

export class Counter implements Metric {
  private readonly values = new SeriesMap(() => ({ n: 0 }));
  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    this.values.at(labels).n += by;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    for (const { labels, value } of this.values.entries()) out.push(`${this.name}${formatLabels(labels)} ${formatNumber(value.n)}`);
  }
}

export class Histogram implements Metric {
  private readonly values = new SeriesMap(() => ({ buckets: new Array<number>(DURATION_BUCKETS_S.length).fill(0), sum: 0, count: 0 }));
  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}

  observe(labels: Labels, seconds: number): void {
    const v = this.values.at(labels);
    for (let i = 0; i < DURATION_BUCKETS_S.length; i++) if (seconds <= DURATION_BUCKETS_S[i]!) v.buckets[i]!++;
    v.sum += seconds;
    v.count++;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const { labels, value } of this.values.entries()) {
      DURATION_BUCKETS_S.forEach((le, i) => out.push(`${this.name}_bucket${formatLabels(labels, ["le", String(le)])} ${value.buckets[i]}`));
      out.push(`${this.name}_bucket${formatLabels(labels, ["le", "+Inf"])} ${value.count}`);
      out.push(`${this.name}_sum${formatLabels(labels)} ${formatNumber(value.sum)}`, `${this.name}_count${formatLabels(labels)} ${value.count}`);
    }
  }
}

/** A gauge read when scraped: one value, or one value per label set. */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly read: () => number | readonly (readonly [Labels, number])[],
  ) {}

  render(out: string[]): void {
    let values: number | readonly (readonly [Labels, number])[];
    try {
      values = this.read();
    } catch {
      return; // a source that cannot answer now (e.g. during shutdown) is left out of this scrape
    }
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`);
    if (typeof values === "number") out.push(`${this.name} ${formatNumber(values)}`);
    else for (const [labels, v] of values.slice(0, MAX_SERIES_PER_METRIC)) out.push(`${this.name}${formatLabels(labels)} ${formatNumber(v)}`);
  }
}

export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  private add<M extends Metric>(m: M): M {
    assert(NAME_RE.test(m.name), `metric name ${m.name} is valid`);
    const existing = this.metrics.get(m.name);
    if (existing) {
      // Registered twice (a second node object in one test process): share the first.
      assert(existing.constructor === m.constructor, `metric ${m.name} is registered with one type`);
      return existing as M;
    }
    this.metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }

  histogram(name: string, help: string): Histogram {
    return this.add(new Histogram(name, help));
  }

  /** A gauge; registering a name again replaces its source (the newest node object wins). */
  gauge(name: string, help: string, read: () => number | readonly (readonly [Labels, number])[]): void {
    const g = new Gauge(name, help, read);
    assert(NAME_RE.test(name), `metric name ${name} is valid`);
    this.metrics.set(name, g);
  }

  /** The text exposition of every metric, sorted by name. */
  render(): string {
    const out: string[] = [];
    for (const name of [...this.metrics.keys()].sort()) this.metrics.get(name)!.render(out);
    return out.join("\n") + "\n";
  }
}

export const metrics = new MetricsRegistry();

/** Seconds since `startNs` (from Bun.nanoseconds()). */
export function secondsSince(startNs: number): number {
  return (Bun.nanoseconds() - startNs) / 1e9;
}
