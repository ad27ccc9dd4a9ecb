// Scrub (Garage's scrub worker): reads every block this node stores, slowly, and checks that its
// content still hashes to its name. A block that does not (bit rot, a torn write, an operator's
// mistake) is moved aside as `<name>.corrupted` and queued for resync, which fetches a good copy
// from another node of its partition. This module owns the pass, its pace and its schedule; the
// time of the last complete pass is kept in node_meta so restarts do not postpone it forever.
import type { Database } from "bun:sqlite";
import { logger } from "../util/log";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import type { ZstdCodec } from "./codec";
import { hashHex, type RawBlockHash } from "./hash";
import type { BlockHash } from "../util/ids";
import type { LocalBlockStore } from "./store";

const log = logger("scrub");

/** Time between two complete passes (Garage: 25 to 35 days). */
export const SCRUB_INTERVAL_MS = 30 * 24 * 60 * 60 * 1000;
/** A node that never scrubbed starts its first pass this long after start-up. */
export const SCRUB_FIRST_DELAY_MS = 24 * 60 * 60 * 1000;
/** How often the schedule is looked at. */
const SCRUB_CHECK_INTERVAL_MS = 60 * 60 * 1000;
/**
 * After each block, sleep this many times as long as the block took (Garage's "tranquility"):
 * the scrub then uses about 1 / (1 + SCRUB_TRANQUILITY) of a disk and a core.
 */
export const SCRUB_TRANQUILITY = 4;
const META_KEY = "scrub_last_completed";

export interface ScrubReport {
  checked: number;
  corrupted: number;
  /** The pass was stopped before its end. */
  interrupted: boolean;
}

export interface ScrubDeps {
  store: LocalBlockStore;
  codec: ZstdCodec;
  /** BLAKE3 of a block (the hash pool's worker in the server). */
  hash(data: Uint8Array): Promise<RawBlockHash>;
  /** Queues blocks to be fetched again from other nodes. */
  resync(hashes: BlockHash[]): void;
  db: Database;
  blockSize: number;
}

export class BlockScrub {
  private readonly loop: WorkerLoop<ScrubReport>;

  constructor(
    private readonly deps: ScrubDeps,
    private readonly tranquility = SCRUB_TRANQUILITY,
  ) {
    // A call during a pass gets the next one, which starts when the current one ends (calls
    // meanwhile share it): the pass under way may be past blocks that rotted before the call
    // (`bunker repair scrub` must check everything as of its request).
    this.loop = new WorkerLoop(
      { name: "block scrub", again: true, poll: { everyMs: SCRUB_CHECK_INTERVAL_MS, due: () => Date.now() - (this.lastCompleted() ?? 0) >= SCRUB_INTERVAL_MS } },
      ({ signal }) => this.pass(signal),
    );
  }

  get stats(): WorkerStats {
    return this.loop.stats;
  }

  start(): void {
    if (this.lastCompleted() === undefined) this.setLastCompleted(Date.now() - SCRUB_INTERVAL_MS + SCRUB_FIRST_DELAY_MS);
    this.loop.start();
  }

  /** Stops the pass under way (it then does not count as complete) and waits for it. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One pass over every stored block (see the constructor for a call during a pass). */
  run(): Promise<ScrubReport> {
    return this.loop.run();
  }

  private async pass(signal: AbortSignal): Promise<ScrubReport> {
    const report: ScrubReport = { checked: 0, corrupted: 0, interrupted: false };
    for await (const name of this.deps.store.list()) {
      if (signal.aborted) {
        report.interrupted = true;
        return report;
      }
      const started = performance.now();
      if (!(await this.check(name))) report.corrupted++;
      report.checked++;
      const took = performance.now() - started;
      if (this.tranquility > 0) await Bun.sleep(took * this.tranquility);
    }
    this.setLastCompleted(Date.now());
    if (report.corrupted > 0) log.warn(`${report.corrupted} of ${report.checked} blocks were corrupted; moved aside and queued for resync`);
    else log.info(`pass complete: ${report.checked} blocks checked, all intact`);
    return report;
  }

  /** True when the block is intact (or gone meanwhile); a corrupted one is moved aside. */
  private async check(name: BlockHash): Promise<boolean> {
    const { store, codec } = this.deps;
    const stored = await store.read(name);
    if (!stored) return true; // deleted by GC or offload meanwhile
    let plain: Uint8Array | undefined;
    try {
      plain = stored.compressed ? await codec.decompress(stored.data, this.deps.blockSize) : stored.data;
    } catch {
      // An unreadable zstd frame is corruption too.
    }
    if (plain !== undefined && hashHex(await this.deps.hash(plain)) === name) return true;
    await store.quarantine(name);
    this.deps.resync([name]);
    this.stats.noteError(new Error(`block ${name.slice(0, 16)} did not match its hash`));
    return false;
  }

  lastCompleted(): number | undefined {
    const row = this.deps.db.query(`SELECT v FROM node_meta WHERE k = ?`).get(META_KEY) as { v: string } | null;
    return row ? Number(row.v) : undefined;
  }

  private setLastCompleted(ms: number): void {
    this.deps.db.query(`INSERT OR REPLACE INTO node_meta (k, v) VALUES (?, ?)`).run(META_KEY, String(ms));
  }
}
