// The seeded nemesis: one fault at a time, each held for a bounded time and then healed, in an
// order drawn from the seed (every kind once, shuffled, before any repeats, so that even a short
// run meets them all). Each fault's window goes into the history for per-kind availability.
import { mulberry32 } from "../helpers/random";
import { cut, healNetwork } from "./net";
import type { FaultCluster } from "./cluster";
import type { FaultWindow, History } from "./history";

export const FAULT_KINDS = ["isolate", "split", "kill", "pause", "skew", "layout", "disk-full"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** How long a fault is held, and the quiet gap after it is healed (ms). */
const HOLD_MS: [number, number] = [5_000, 9_000];
const GAP_MS: [number, number] = [1_500, 3_000];
/** Clock skew of a node restarted under faketime, either way. */
export const SKEW_S = 30;
/** How far a skewed node's Date header may be from the skew asked (1 s resolution, a loaded machine). */
const SKEW_TOLERANCE_S = 5;
/** A data dir with more than this left free is not full (the fill failed). */
const FILL_LEFT_MAX = 1024 * 1024;
/** Hard bound on the faults of one run. */
const MAX_FAULTS = 200;

export class Nemesis {
  private readonly rng: () => number;

  constructor(
    seed: number,
    private readonly cluster: FaultCluster,
    private readonly history: History,
    private readonly log: (line: string) => void,
  ) {
    this.rng = mulberry32((seed ^ 0x5bd1e995) >>> 0);
  }

  private between([lo, hi]: [number, number]): number {
    return lo + Math.floor(this.rng() * (hi - lo + 1));
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rng() * xs.length)]!;
  }

  /**
   * Faults one after another until `until` (history clock); the first round (every kind once)
   * may run on to `hardUntil` on a slow machine. The last fault is healed before it returns.
   */
  async run(until: number, hardUntil: number): Promise<void> {
    const order: FaultKind[] = [...FAULT_KINDS];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(this.rng() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let n = 0; n < MAX_FAULTS; n++) {
      const hold = this.between(HOLD_MS);
      const gap = this.between(GAP_MS);
      if (this.history.now() + hold > (n < order.length ? hardUntil : until)) break;
      const kind = n < order.length ? order[n]! : this.pick(FAULT_KINDS);
      await this.fault(kind, hold);
      await Bun.sleep(gap);
    }
  }

  private async fault(kind: FaultKind, hold: number): Promise<void> {
    const c = this.cluster;
    const nodes = c.storage;
    const victim = this.pick(nodes);
    const window: FaultWindow = { kind, detail: "", nodes: [victim.index], start: this.history.now(), end: Infinity };
    this.history.faults.push(window);
    const say = (detail: string) => {
      window.detail = detail;
      this.log(`[${(window.start / 1000).toFixed(1)}s] ${kind}: ${detail}`);
    };
    try {
      switch (kind) {
        case "isolate": {
          say(`node ${victim.index} cut from every other node for ${hold} ms`);
          cut([victim.index], c.nodes.filter((n) => n !== victim).map((n) => n.index));
          await Bun.sleep(hold);
          healNetwork(c.nodes.map((n) => n.index));
          break;
        }
        case "split": {
          // A zone (minority, or the zone pair that is the majority) against the rest.
          const zone = this.pick([...new Set(nodes.map((n) => n.zone))]);
          const side = c.nodes.filter((n) => n.zone === zone);
          const rest = c.nodes.filter((n) => n.zone !== zone);
          window.nodes = (side.length <= rest.length ? side : rest).map((n) => n.index);
          say(`zone ${zone} (nodes ${side.map((n) => n.index).join(",")}) cut from nodes ${rest.map((n) => n.index).join(",")} for ${hold} ms`);
          cut(side.map((n) => n.index), rest.map((n) => n.index));
          await Bun.sleep(hold);
          healNetwork(c.nodes.map((n) => n.index));
          break;
        }
        case "kill": {
          say(`node ${victim.index} killed (SIGKILL), restarted after ${hold} ms`);
          await c.kill(victim);
          await Bun.sleep(hold);
          await c.spawn(victim, 0);
          break;
        }
        case "pause": {
          say(`node ${victim.index} paused (SIGSTOP) for ${hold} ms`);
          c.pause(victim);
          await Bun.sleep(hold);
          c.resume(victim);
          break;
        }
        case "skew": {
          const skew = this.rng() < 0.5 ? -SKEW_S : SKEW_S;
          say(`node ${victim.index} restarted with its clock ${skew > 0 ? "+" : ""}${skew} s (faketime) for ${hold} ms`);
          await c.stop(victim);
          await c.spawn(victim, skew);
          // Evidence that the skew took: the node's own Date header (1 s resolution).
          const offset = await c.clockOffsetS(victim);
          const seen = `its Date header is ${offset === null ? "missing" : `${offset > 0 ? "+" : ""}${offset} s`} off`;
          window.detail += `; ${seen}`;
          this.log(`  node ${victim.index}: ${seen}`);
          if (offset === null || Math.abs(offset - skew) > SKEW_TOLERANCE_S) throw new Error(`node ${victim.index} was to be ${skew} s off, its Date header says ${offset}`);
          await Bun.sleep(hold);
          await c.stop(victim);
          await c.spawn(victim, 0);
          break;
        }
        case "layout": {
          const j = c.joiner;
          window.nodes = [j.index];
          say(`node ${j.index} added to the layout in zone ${j.zone}, removed again after ${hold} ms`);
          await c.changeLayout([{ id: j.id, zone: j.zone, capacity: 10 * 1024 ** 3, tags: [] }]);
          await Bun.sleep(hold);
          await c.changeLayout([{ id: j.id, remove: true }]);
          break;
        }
        case "disk-full": {
          say(`data dir of node ${victim.index} filled for ${hold} ms`);
          const left = c.fillDisk(victim);
          window.detail += `; ${left} bytes left`;
          this.log(`  node ${victim.index}: ${left} bytes left on its data dir`);
          if (left > FILL_LEFT_MAX) throw new Error(`node ${victim.index}'s data dir could not be filled (${left} bytes left)`);
          await Bun.sleep(hold);
          c.freeDisk(victim);
          break;
        }
      }
    } catch (err) {
      // Reported (and failing the run), but the run goes on: the rest of the history still counts.
      const line = `${kind} (${window.detail}) at ${(window.start / 1000).toFixed(1)}s: ${(err as Error).message}`;
      this.log(`  nemesis error: ${line}`);
      this.history.nemesisErrors.push(line);
      await this.healAll().catch((e) => this.history.nemesisErrors.push(`healing after it: ${(e as Error).message}`));
    } finally {
      window.end = this.history.now();
    }
  }

  /** Undoes every fault that may still be in place: network, pauses, dead or skewed nodes, full disks. */
  async healAll(): Promise<void> {
    const c = this.cluster;
    healNetwork(c.nodes.map((n) => n.index));
    for (const n of c.nodes) {
      c.freeDisk(n);
      if (n.paused) c.resume(n);
      if (n.skewS !== 0) await c.stop(n);
      if (n.proc === null || n.proc.exitCode !== null) await c.spawn(n, 0);
    }
  }
}
