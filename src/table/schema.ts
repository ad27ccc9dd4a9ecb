// What a table is: how its entries are keyed, placed and merged. Each model file supplies one.
import type { Database } from "bun:sqlite";
import type { CrdtTableName } from "../db/migrations";

/** Lets an update hook decide further writes inside the same transaction. */
export interface HookContext {
  readonly db: Database;
  /**
   * Queues an insert into another table; applied after commit through the table layer (quorum),
   * at once or, with "after-read-grace", once the reads that may still use what it releases
   * are over (LocalStoreOptions.readGraceMs).
   */
  enqueue(table: CrdtTableName, entry: unknown, when?: "now" | "after-read-grace"): void;
  /** Timestamp source for derived writes. */
  now(): number;
}

/**
 * Checks an entry that came from another node (an RPC request or reply): undefined when it has
 * the table's shape, else the first problem ("<path>: <expected> (got <value>)"). The model
 * supplies one per table (model/entry-schemas.ts); the table layer knows no entry shapes.
 */
export type EntryValidator = (entry: unknown) => string | undefined;

export interface TableSchema<E> {
  readonly name: CrdtTableName;
  /** sharded: on the nodes of hash(partition key); full: on every node, read locally. */
  readonly replication: "sharded" | "full";
  /**
   * "block-hash": the partition key is a block's BLAKE3 hash (hex) and the entry goes to that
   * block's partition (block references); otherwise it goes to the partition of a hash of it.
   */
  readonly placement?: "block-hash";
  /**
   * Checks entries received from peers before they are merged or used (rpc-replicas.ts, sync.ts,
   * full-sync.ts, table.ts, gc.ts). Absent: entries are taken as they come (unit-test tables).
   */
  readonly validateEntry?: EntryValidator;
  partitionKey(entry: E): string;
  sortKey(entry: E): string;
  /** CRDT join: commutative, associative, idempotent. */
  merge(local: E, incoming: E): E;
  /**
   * Runs inside the write transaction after every merge, even one that changed nothing:
   * some cascades depend on what the incoming entry carried (a version the merge dropped).
   */
  onMerge?(old: E | undefined, incoming: E, merged: E, ctx: HookContext): void;
  /**
   * Runs inside the transaction that removes a stored entry outright (table GC of a tombstone,
   * offload of a partition this node no longer holds): local state derived from the entry goes.
   */
  onRemove?(stored: E, ctx: HookContext): void;
  /**
   * Sharded tables only: true when the entry records nothing but a deletion, so that once every
   * replica holds it (and TABLE_GC_DELAY_MS has passed) removing it can bring nothing back.
   */
  isTombstone?(entry: E): boolean;
  /**
   * True while the entry holds work that start-up repair must finish if this node stops (an
   * upload it was receiving, a version not settled yet). Such entries are marked in an index
   * as they are stored, so repair reads them and nothing else (LocalStore.unsettledEntries).
   */
  unsettled?(entry: E): boolean;
  /**
   * Checked by each replica just before it removes a tombstone: true while other local state
   * still needs it (the tombstone stays and GC retries later).
   */
  holdTombstone?(entry: E, db: Database): boolean;
}
