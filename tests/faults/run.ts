// Entry of the fault suite: builds the network and the cluster, runs the workload under the
// nemesis, heals everything, waits for convergence, reads every key through every node, checks
// the history and prints the report. `bun tests/faults/run.ts` runs it alone (exit 1 on any
// anomaly); tests/faults/faults.test.ts runs it under bun:test. Settings come from the
// environment: FAULTS_SEED, FAULTS_DURATION_S, FAULTS_NODES, FAULTS_WORKERS (docs/faults.md).
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { parseDecimal } from "../../src/util/decimal";
import { FaultCluster, libfaketimePath } from "./cluster";
import { check, formatReport, type Report } from "./checker";
import { History } from "./history";
import { FAULT_KINDS, Nemesis } from "./nemesis";
import { cleanupNetwork, createBridge, createNodeNamespace, namespacesUnavailable, sh } from "./net";
import { Workload } from "./workload";

export interface FaultsOptions {
  seed: number;
  /** Seconds of workload under faults. */
  durationS: number;
  /** Storage nodes (in zones z1, z2, z3 in turn); one joiner more is started for layout faults. */
  nodes: number;
  workers: number;
  /** The cluster's consistency_mode: "consistent" (the suite's subject); the weaker modes show the checker at work. */
  consistencyMode: "consistent" | "degraded" | "dangerous";
}

/** On a slow machine the nemesis's first round (each fault kind once) may run this far past the duration. */
const FIRST_ROUND_GRACE_MS = 45_000;
/** After healing, every node must be back and see every other within this. */
const RECOVER_MS = 60_000;
/** After healing, every node must agree on every key and listing within this. */
const CONVERGE_MS = 90_000;
/** Concurrent requests of a convergence round. */
const CONVERGE_CONCURRENCY = 4;
/** Ids of final reads start here: far above any id the workload can draw, so none clash. */
const FINAL_ID_BASE = 1_000_000_000;

function envInt(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = parseDecimal(raw, min, max);
  if (n === undefined) throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

export function optionsFromEnv(): FaultsOptions {
  return {
    seed: envInt("FAULTS_SEED", randomBytes(4).readUInt32LE(0), 0, 2 ** 32 - 1),
    durationS: envInt("FAULTS_DURATION_S", 90, 10, 24 * 3600),
    nodes: envInt("FAULTS_NODES", 5, 3, 9),
    workers: envInt("FAULTS_WORKERS", 4, 1, 32),
    consistencyMode: consistencyModeFromEnv(),
  };
}

function consistencyModeFromEnv(): FaultsOptions["consistencyMode"] {
  const raw = process.env.FAULTS_CONSISTENCY_MODE;
  if (raw === undefined || raw === "") return "consistent";
  if (raw === "consistent" || raw === "degraded" || raw === "dangerous") return raw;
  throw new Error(`FAULTS_CONSISTENCY_MODE must be consistent, degraded or dangerous, got "${raw}"`);
}

/** Why the suite cannot run on this machine, or null when it can. */
export function unavailableReason(): string | null {
  return namespacesUnavailable() ?? (libfaketimePath() === null ? "libfaketime is not installed (apt-get install faketime)" : null);
}

/** Leftovers of a crashed run: tmpfs data dirs still mounted. */
function unmountStale(): void {
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const [source, target] = line.split(" ");
    if (source?.startsWith("bunker-faults-") && target) sh(["umount", "-l", target], false);
  }
}

export interface FaultsResult {
  report: Report;
  history: History;
  text: string;
  /** Every node answered every final read and listing, and they agreed. */
  converged: boolean;
  /** No anomaly, converged, and every fault was injected and healed as planned. */
  clean: boolean;
  /** Where the node logs are (kept when something was found). */
  workDir: string;
}

export async function runFaults(o: FaultsOptions, log: (line: string) => void = console.log): Promise<FaultsResult> {
  log(`faults seed: ${o.seed} (replay with FAULTS_SEED=${o.seed}); ${o.durationS} s, ${o.nodes} nodes + 1 joiner, ${o.workers} workers, consistency_mode ${o.consistencyMode}`);
  const reason = unavailableReason();
  if (reason) throw new Error(`cannot run the fault suite: ${reason}`);
  cleanupNetwork();
  unmountStale();
  const workDir = mkdtempSync(join(tmpdir(), "bunker-faults-"));
  const zones = Array.from({ length: o.nodes }, (_, i) => `z${(i % 3) + 1}`);
  const cluster = new FaultCluster(workDir, zones, "z3", o.consistencyMode);
  // Ctrl-C or a killed runner must not leave namespaces, mounts or servers behind.
  const emergency = () => {
    for (const n of cluster.nodes) n.proc?.kill("SIGKILL");
    for (const n of cluster.nodes) sh(["umount", "-l", n.dataDir], false);
    cleanupNetwork();
  };
  const onSignal = () => {
    emergency();
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", emergency);
  let keep = true;
  try {
    createBridge();
    for (let i = 1; i <= o.nodes + 1; i++) createNodeNamespace(i);
    const setupStart = Date.now();
    await cluster.start();
    const storage = cluster.storage.map((n) => n.index);
    const target = (i: number) => cluster.target(cluster.nodes[i - 1]!);
    await waitUntil("the key and bucket on every node", 30_000, async () => {
      const h = new History(performance.now(), FINAL_ID_BASE);
      const w = new Workload({ seed: o.seed, workers: 0, done: () => true, nodes: storage, target, history: h });
      for (const i of storage) if ((await w.list(0, i, "", "list")).outcome !== "ok") return false;
      return true;
    });
    log(`cluster up in ${((Date.now() - setupStart) / 1000).toFixed(1)} s (work dir ${workDir})`);

    const history = new History();
    const until = history.now() + o.durationS * 1000;
    // The workload runs for the duration asked, and on while the nemesis finishes its first round.
    let nemesisFinished = false;
    const workload = new Workload({ seed: o.seed, workers: o.workers, done: () => nemesisFinished && history.now() >= until, nodes: storage, target, history });
    const nemesis = new Nemesis(o.seed, cluster, history, log);
    const nemesisDone = nemesis
      .run(until, until + FIRST_ROUND_GRACE_MS)
      .then(() => nemesis.healAll())
      .catch((err) => history.nemesisErrors.push(`nemesis: ${(err as Error).message}`))
      .finally(() => (nemesisFinished = true));
    await workload.run();
    await nemesisDone;
    const missed = FAULT_KINDS.filter((k) => !history.faults.some((f) => f.kind === k));
    if (missed.length) log(`not every fault kind fitted in the time: ${missed.join(", ")} did not happen (a longer FAULTS_DURATION_S, or a less loaded machine)`);
    log(`workload done: ${history.ops.length} operations; healing and waiting for convergence`);

    await nemesis.healAll();
    await waitUntil("every node up and seeing every other", RECOVER_MS, async () => (await cluster.upCounts()).every((c) => c === cluster.nodes.length));
    const final = await converge(o.seed, history, storage, target);
    history.ops.push(...final.ops);
    log(final.converged ? `converged after ${final.rounds} round(s)` : `NOT converged after ${final.rounds} rounds: the last round's reads are checked`);

    const report = check(history);
    let text = formatReport(report, history);
    if (!final.converged) text += `\nNOT CONVERGED within ${CONVERGE_MS} ms: some final reads or listings failed or disagree`;
    for (const e of history.nemesisErrors) text += `\nnemesis error: ${e}`;
    log(text);
    const clean = report.anomalies.length === 0 && final.converged && history.nemesisErrors.length === 0;
    keep = !clean;
    if (keep) {
      // The evidence: every operation, fault window and anomaly, one JSON object a line.
      const lines = [...history.faults.map((f) => ({ fault: f })), ...history.ops.map((op) => ({ op })), ...report.anomalies.map((a) => ({ anomaly: a }))];
      writeFileSync(join(workDir, "history.jsonl"), lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
      log(`node logs and history.jsonl kept in ${workDir}`);
    }
    return { report, history, text, workDir, converged: final.converged, clean };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", emergency);
    await cluster.destroy(keep);
    cleanupNetwork();
  }
}

async function waitUntil(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(500);
  }
}

/**
 * Rounds of reads of every key ever written, through every storage node, plus a full listing
 * from each, until a round where every request is answered and every node says the same (or
 * CONVERGE_MS is spent). Returns the last round's operations.
 */
async function converge(seed: number, history: History, nodes: number[], target: (i: number) => ReturnType<FaultCluster["target"]>) {
  const keys = [...new Set(history.ops.filter((o) => o.kind !== "list" && o.kind !== "get").map((o) => o.key))].sort();
  const deadline = Date.now() + CONVERGE_MS;
  let round = 0;
  for (;;) {
    round++;
    const scratch = new History(history.t0, FINAL_ID_BASE + round * 1_000_000);
    const w = new Workload({ seed, workers: 0, done: () => true, nodes, target, history: scratch });
    const jobs: (() => Promise<unknown>)[] = [];
    for (const k of keys) for (const n of nodes) jobs.push(() => w.get(0, n, k, "final-get"));
    for (const n of nodes) jobs.push(() => w.list(0, n, "", "final-list"));
    let next = 0;
    await Promise.all(
      Array.from({ length: CONVERGE_CONCURRENCY }, async () => {
        while (next < jobs.length) await jobs[next++]!();
      }),
    );
    const answered = scratch.ops.every((op) => op.outcome === "ok");
    const views = new Map<string, Set<string>>();
    for (const op of scratch.ops) {
      if (op.kind !== "final-get") continue;
      const v = op.read?.kind === "value" ? `op ${op.read.op}` : (op.read?.kind ?? "none");
      views.set(op.key, (views.get(op.key) ?? new Set()).add(v));
    }
    const present = [...views].filter(([, v]) => v.size === 1 && !v.has("absent")).map(([k]) => k).sort().join(",");
    const listingsAgree = scratch.ops.filter((op) => op.kind === "final-list").every((op) => [...(op.listed ?? [])].sort().join(",") === present);
    const converged = answered && [...views.values()].every((v) => v.size === 1) && listingsAgree;
    if (converged || Date.now() > deadline) return { ops: scratch.ops, converged, rounds: round };
    await Bun.sleep(2_000);
  }
}

if (import.meta.main) {
  const result = await runFaults(optionsFromEnv());
  process.exit(result.clean ? 0 : 1);
}
