// The fault suite's checker: reads the history and finds lost writes, stale reads, phantom and
// corrupt reads, double winners of conditional creates, replicas that disagree after
// convergence, and listings that miss (or invent) keys. The rules, with their reasons, are in
// docs/faults.md; the core one is "dominated" below.
import type { History, Op } from "./history";

export type AnomalyKind = "lost" | "stale" | "phantom" | "corrupt" | "double-win" | "divergent" | "listing-missing" | "listing-extra" | "listing-phantom";
export const ANOMALY_KINDS: AnomalyKind[] = ["lost", "stale", "phantom", "corrupt", "double-win", "divergent", "listing-missing", "listing-extra", "listing-phantom"];

export interface Anomaly {
  kind: AnomalyKind;
  key: string;
  ops: number[];
  detail: string;
}

export interface FaultStats {
  total: number;
  /** Ok or refused, whenever the answer came. */
  answered: number;
  /** Answered before the fault was healed (a node that holds requests until the heal answers late). */
  answeredDuring: number;
  durations: number[];
}

export interface Report {
  anomalies: Anomaly[];
  /** Op kind -> outcome -> count. */
  byKind: Map<string, { ok: number; fail: number; info: number }>;
  /** Fault kind ("none" outside every fault) -> operations overlapping it, and how many were ok or definitely refused. */
  byFault: Map<string, FaultStats>;
  /** Status (or "no answer") -> count, over every request that did not succeed. */
  errors: Map<string, number>;
  status500: number;
  /** The slowest answered operations through nodes no fault hit while they ran (what waits on a sick peer). */
  slowOthers: { op: Op; fault: string }[];
}

/** Anomalies of one kind printed in full; the rest are counted (the history file has them all). */
const MAX_LISTED_PER_KIND = 10;
/** Slowest operations through unaffected nodes listed in the report. */
const MAX_SLOW_LISTED = 5;
const WRITE_KINDS = new Set(["put", "mpu", "cput", "delete"]);
const s = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)}s` : "∞");
const describe = (o: Op) => `op ${o.id} ${o.kind} via node ${o.node} [${s(o.start)}–${s(o.end)}] ${o.outcome}${o.status !== null ? ` ${o.status}` : ""}`;

/** An acknowledged write's effect ends by its completion; an indeterminate one may land any time later. */
const effectEnd = (w: Op) => (w.outcome === "ok" ? w.end : Infinity);

export function check(h: History): Report {
  const anomalies: Anomaly[] = [];
  const byId = new Map(h.ops.map((o) => [o.id, o]));
  const writesOf = new Map<string, Op[]>();
  for (const o of h.ops) {
    if (!WRITE_KINDS.has(o.kind) || o.outcome === "fail") continue;
    writesOf.set(o.key, [...(writesOf.get(o.key) ?? []), o]);
  }

  /**
   * An acknowledged write of `key` that began after a source write's effect ended and was
   * acknowledged before the read began: any linearization puts it between the source and the
   * read, so the read must not return the source's value.
   */
  const dominating = (key: string, sourceEnd: number, readStart: number, source?: Op): Op | undefined =>
    (writesOf.get(key) ?? []).find((w) => w !== source && w.outcome === "ok" && sourceEnd < w.start && w.end < readStart);

  const finals = new Map<string, Op[]>();
  for (const r of h.ops) {
    if ((r.kind !== "get" && r.kind !== "final-get") || r.outcome !== "ok" || !r.read) continue;
    const final = r.kind === "final-get";
    if (final) finals.set(r.key, [...(finals.get(r.key) ?? []), r]);
    const read = r.read;
    if (read.kind === "bad") {
      const phantom = read.why.startsWith("body of key");
      anomalies.push({ kind: phantom ? "phantom" : "corrupt", key: r.key, ops: [r.id], detail: `${describe(r)} returned ${read.why}` });
      continue;
    }
    if (read.kind === "value") {
      const w = byId.get(read.op);
      if (!w || w.key !== r.key || !WRITE_KINDS.has(w.kind) || w.kind === "delete") {
        anomalies.push({ kind: "phantom", key: r.key, ops: [r.id, read.op], detail: `${describe(r)} returned the body of op ${read.op}, which wrote no such value to this key` });
        continue;
      }
      if (w.outcome === "fail") {
        anomalies.push({ kind: "phantom", key: r.key, ops: [r.id, w.id], detail: `${describe(r)} returned the value of ${describe(w)}, which was refused` });
        continue;
      }
      if (w.start > r.end) {
        anomalies.push({ kind: "phantom", key: r.key, ops: [r.id, w.id], detail: `${describe(r)} returned the value of ${describe(w)}, which started after the read ended` });
        continue;
      }
      const d = dominating(r.key, effectEnd(w), r.start, w);
      if (d) {
        anomalies.push({
          kind: final ? "lost" : "stale",
          key: r.key,
          ops: [r.id, w.id, d.id],
          detail: final
            ? `after convergence, node ${r.node} holds the value of ${describe(w)}; the later acknowledged ${describe(d)} is lost`
            : `${describe(r)} returned the value of ${describe(w)}, overwritten by ${describe(d)} before the read began`,
        });
      }
      continue;
    }
    // Absent: from the initial state or from a DELETE that may have happened before the read ended.
    const deletes = (writesOf.get(r.key) ?? []).filter((w) => w.kind === "delete" && w.start < r.end);
    const initialDominated = dominating(r.key, -Infinity, r.start);
    if (!initialDominated) continue;
    const live = deletes.find((d) => !dominating(r.key, effectEnd(d), r.start, d));
    if (live) continue;
    const last = deletes.sort((a, b) => effectEnd(b) - effectEnd(a))[0];
    const d = last ? dominating(r.key, effectEnd(last), r.start, last)! : initialDominated;
    anomalies.push({
      kind: final ? "lost" : "stale",
      key: r.key,
      ops: [r.id, d.id, ...(last ? [last.id] : [])],
      detail: final
        ? `after convergence, node ${r.node} has no object; the acknowledged ${describe(d)} is lost${last ? ` (last delete before it: ${describe(last)})` : ""}`
        : `${describe(r)} found no object, but ${describe(d)} was acknowledged before the read began${last ? ` and after ${describe(last)}` : ""}`,
    });
  }

  // After convergence every node must answer the same for a key.
  const finalValue = new Map<string, string>();
  for (const [key, reads] of finals) {
    const seen = new Set(reads.map((r) => (r.read!.kind === "value" ? `op ${r.read!.op}` : r.read!.kind)));
    if (seen.size > 1) {
      anomalies.push({ kind: "divergent", key, ops: reads.map((r) => r.id), detail: `after convergence the nodes disagree: ${reads.map((r) => `node ${r.node}: ${r.read!.kind === "value" ? `op ${r.read!.op}` : r.read!.kind}`).join(", ")}` });
    } else finalValue.set(key, [...seen][0]!);
  }

  // Conditional creates: at most one acknowledged winner per race.
  const races = new Map<number, Op[]>();
  for (const o of h.ops) if (o.kind === "cput" && o.race !== undefined) races.set(o.race, [...(races.get(o.race) ?? []), o]);
  for (const [race, ops] of races) {
    const winners = ops.filter((o) => o.outcome === "ok");
    if (winners.length > 1) {
      anomalies.push({ kind: "double-win", key: ops[0]!.key, ops: winners.map((o) => o.id), detail: `race ${race}: ${winners.length} acknowledged If-None-Match: * creates: ${winners.map(describe).join("; ")}` });
    }
  }

  // Listings: during the run, no key nobody tried to write; after convergence, exactly the keys that read as present.
  for (const l of h.ops) {
    if (l.outcome !== "ok" || !l.listed) continue;
    if (l.kind === "list") {
      for (const k of l.listed) {
        if (!(writesOf.get(k) ?? []).some((w) => w.kind !== "delete" && w.start < l.end)) {
          anomalies.push({ kind: "listing-phantom", key: k, ops: [l.id], detail: `${describe(l)} listed ${k}, which nobody had written` });
        }
      }
    } else if (l.kind === "final-list") {
      const listed = new Set(l.listed);
      for (const [key, v] of finalValue) {
        if (!key.startsWith(l.key)) continue;
        if (v !== "absent" && !listed.has(key)) anomalies.push({ kind: "listing-missing", key, ops: [l.id], detail: `after convergence, ${describe(l)} does not list ${key}, which reads as ${v}` });
        if (v === "absent" && listed.has(key)) anomalies.push({ kind: "listing-extra", key, ops: [l.id], detail: `after convergence, ${describe(l)} lists ${key}, which reads as absent` });
      }
    }
  }

  const byKind = new Map<string, { ok: number; fail: number; info: number }>();
  const byFault = new Map<string, FaultStats>();
  const errors = new Map<string, number>();
  let status500 = 0;
  for (const o of h.ops) {
    const k = byKind.get(o.kind) ?? { ok: 0, fail: 0, info: 0 };
    k[o.outcome]++;
    byKind.set(o.kind, k);
    if (o.status === 500) status500++;
    if (o.outcome !== "ok") {
      const label = `${o.kind} ${o.error ?? (o.status === null ? "no answer" : String(o.status))}`.replace(/\d{3,}(?= ms)/, "…");
      errors.set(label, (errors.get(label) ?? 0) + 1);
    }
    if (o.kind.startsWith("final")) continue;
    // Per fault kind, and split by whether the request went to a node the fault hits.
    const groups = new Map<string, boolean>();
    for (const f of h.faults.filter((f) => o.start < f.end && o.end > f.start)) {
      const during = o.end <= f.end;
      for (const g of [f.kind, `${f.kind} ${f.nodes.includes(o.node) ? "(to hit node)" : "(to others)"}`]) groups.set(g, (groups.get(g) ?? false) || during);
    }
    if (groups.size === 0) groups.set("none", true);
    for (const [g, during] of groups) {
      const a = byFault.get(g) ?? { total: 0, answered: 0, answeredDuring: 0, durations: [] };
      a.total++;
      a.durations.push(o.end - o.start);
      if (o.outcome !== "info") a.answered++;
      if (o.outcome !== "info" && during) a.answeredDuring++;
      byFault.set(g, a);
    }
  }
  const slowOthers: { op: Op; fault: string }[] = [];
  for (const o of h.ops) {
    if (o.outcome === "info" || o.kind.startsWith("final")) continue;
    const during = h.faults.filter((f) => o.start < f.end && o.end > f.start);
    if (during.length && during.every((f) => !f.nodes.includes(o.node))) slowOthers.push({ op: o, fault: during.map((f) => `${f.kind} (${f.detail})`).join("; ") });
  }
  slowOthers.sort((a, b) => b.op.end - b.op.start - (a.op.end - a.op.start));
  return { anomalies, byKind, byFault, errors, status500, slowOthers: slowOthers.slice(0, MAX_SLOW_LISTED) };
}

/** The report as text: operations, availability per fault kind, errors, anomalies. */
export function formatReport(r: Report, h: History): string {
  const lines: string[] = [];
  lines.push("operations (ok / refused / indeterminate):");
  for (const [k, v] of [...r.byKind].sort()) lines.push(`  ${k.padEnd(11)} ${String(v.ok).padStart(6)} ${String(v.fail).padStart(6)} ${String(v.info).padStart(6)}`);
  lines.push("availability: operations overlapping the fault; answered (ok or refused) at all, and before the heal; median and longest duration:");
  const pct = (n: number, of: number) => `${((100 * n) / Math.max(1, of)).toFixed(1)}%`.padStart(6);
  for (const [k, v] of [...r.byFault].sort()) {
    const d = [...v.durations].sort((a, b) => a - b);
    lines.push(
      `  ${k.padEnd(24)} ${String(v.total).padStart(5)}  answered ${String(v.answered).padStart(5)} ${pct(v.answered, v.total)}  before heal ${String(v.answeredDuring).padStart(5)} ${pct(v.answeredDuring, v.total)}  p50 ${s(d[d.length >> 1] ?? 0)}  max ${s(d[d.length - 1] ?? 0)}`,
    );
  }
  lines.push("slowest answered operations through nodes no fault hit:");
  for (const { op, fault } of r.slowOthers) lines.push(`  ${s(op.end - op.start)}  ${describe(op)} ${op.key}${op.bytes !== undefined ? ` ${op.bytes} bytes` : ""}, during ${fault}`);
  lines.push(`faults: ${h.faults.map((f) => `${f.kind}@${s(f.start)}–${s(f.end)}`).join(", ") || "none"}`);
  lines.push(`HTTP 500 answers: ${r.status500}`);
  if (r.errors.size) {
    lines.push("not ok, by cause:");
    for (const [k, n] of [...r.errors].sort((a, b) => b[1] - a[1]).slice(0, 25)) lines.push(`  ${String(n).padStart(6)}  ${k}`);
  }
  const counts = ANOMALY_KINDS.map((k) => `${k} ${r.anomalies.filter((a) => a.kind === k).length}`);
  lines.push(`anomalies: ${counts.join(", ")}`);
  for (const kind of ANOMALY_KINDS) {
    const found = r.anomalies.filter((a) => a.kind === kind);
    for (const a of found.slice(0, MAX_LISTED_PER_KIND)) lines.push(`  ${a.kind} ${a.key}: ${a.detail}`);
    if (found.length > MAX_LISTED_PER_KIND) lines.push(`  … and ${found.length - MAX_LISTED_PER_KIND} more ${kind} (all in history.jsonl)`);
  }
  return lines.join("\n");
}
