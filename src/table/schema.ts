// What a table is: how its entries are keyed, placed and merged. Each model file supplies one.
import type { Database } from "bun:sqlite";
import type { CrdtTableName } from "../db/migrations";

/** Lets an update hook decide further writes inside the same transaction. */
export interface HookContext {
  readonly db: Database;
  /** Queues an insert into another table; applied after commit through the table layer (quorum). */
  enqueue(table: CrdtTableName, entry: unknown): void;
  /** Timestamp source for derived writes. */
  now(): number;
}

export interface TableSchema<E> {
  readonly name: CrdtTableName;
  /** sharded: on the nodes of hash(partition key); full: on every node, read locally. */
  readonly replication: "sharded" | "full";
  /**
   * "block-hash": the partition key is a block's BLAKE3 hash (hex) and the entry goes to that
   * block's partition (block references); otherwise it goes to the partition of a hash of it.
   */
  readonly placement?: "block-hash";
  partitionKey(entry: E): string;
  sortKey(entry: E): string;
  /** CRDT join: commutative, associative, idempotent. */
  merge(local: E, incoming: E): E;
  /**
   * Runs inside the write transaction after every merge, even one that changed nothing:
   * some cascades depend on what the incoming entry carried (a version the merge dropped).
   */
  onMerge?(old: E | undefined, incoming: E, merged: E, ctx: HookContext): void;
}
