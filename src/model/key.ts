// Access keys (full-copy table): id, secret, name and the create-bucket flag.
import type { TableSchema } from "../table/schema";
import { mergeLww, type Lww } from "./crdt";

export interface KeyEntry {
  id: string;
  secret: string;
  created: number;
  deleted: boolean;
  name: Lww<string>;
  allowCreateBucket: Lww<boolean>;
}

export const keySchema: TableSchema<KeyEntry> = {
  name: "key",
  replication: "full",
  partitionKey: () => "",
  sortKey: (k) => k.id,
  merge(a, b) {
    const deleted = a.deleted || b.deleted;
    return {
      id: a.id,
      // Deleting a key forgets its secret everywhere.
      secret: deleted ? "" : a.secret || b.secret,
      created: Math.min(a.created, b.created),
      deleted,
      name: mergeLww(a.name, b.name),
      allowCreateBucket: deleted ? { ts: Math.max(a.allowCreateBucket.ts, b.allowCreateBucket.ts), v: false } : mergeLww(a.allowCreateBucket, b.allowCreateBucket),
    };
  },
};
