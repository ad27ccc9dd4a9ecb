// Which of the 256 partitions an entry belongs to, from its partition key. Every sharded table is
// placed by a hash of its partition key, except tables keyed by a block hash: those go to the
// partition of the block itself, so that a block's references (and the reference counts derived
// from them) live on the nodes that store the block.
import { createHash } from "node:crypto";
import { partitionOfHashHex } from "../cluster/layout";
import type { TableSchema } from "./schema";

export function partitionOfKey(pk: string): number {
  return partitionOfHashHex(createHash("sha256").update(pk).digest("hex"));
}

/** The partition of an entry of `schema` with partition key `pk` (0 for full-copy tables). */
export function partitionOfEntry(schema: Pick<TableSchema<unknown>, "replication" | "placement">, pk: string): number {
  if (schema.replication === "full") return 0;
  return schema.placement === "block-hash" ? partitionOfHashHex(pk) : partitionOfKey(pk);
}
