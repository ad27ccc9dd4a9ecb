// Global bucket names (full-copy table): name -> bucket id, last writer wins.
import type { TableSchema } from "../table/schema";

export interface BucketAliasEntry {
  name: string;
  /** null once the name was released. */
  bucketId: string | null;
  ts: number;
}

export const bucketAliasSchema: TableSchema<BucketAliasEntry> = {
  name: "bucket_alias",
  replication: "full",
  partitionKey: () => "",
  sortKey: (a) => a.name,
  merge(a, b) {
    if (a.ts !== b.ts) return a.ts > b.ts ? a : b;
    return (a.bucketId ?? "") >= (b.bucketId ?? "") ? a : b;
  },
};
