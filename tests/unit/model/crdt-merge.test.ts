// Property-style tests: every table's merge must be a join (commutative, associative,
// idempotent) so replicas converge whatever order they receive writes in. Inputs are random
// (seeded) but respect what the schemas assume "by construction": fields that only the
// creator writes (a key's secret, a block's hash at an offset, a version's timestamp, ...)
// are the same in every copy of one entry.
import { describe, expect, test } from "bun:test";
import type { TableSchema } from "../../../src/table/schema.ts";
import { bucketSchema, type BucketEntry } from "../../../src/model/bucket.ts";
import { bucketAliasSchema, type BucketAliasEntry } from "../../../src/model/bucket-alias.ts";
import { keySchema, type KeyEntry } from "../../../src/model/key.ts";
import { objectSchema, type ObjectEntry, type ObjectVersion } from "../../../src/model/object.ts";
import { versionBlockSchema, versionSchema, type VersionBlockEntry, type VersionEntry } from "../../../src/model/version.ts";
import { blockRefSchema, type BlockRefEntry } from "../../../src/model/block-ref.ts";
import { uploadPartSchema, uploadSchema, type UploadEntry, type UploadOutcome, type UploadPartEntry } from "../../../src/model/upload.ts";
import { bucketCounterSchema, type BucketCounterEntry } from "../../../src/model/counter.ts";
import { mulberry32 } from "../../helpers/random";

const ROUNDS = 300;

/** Seeded helpers over mulberry32, so a failure is reproducible. */
function rng(seed: number) {
  const next = mulberry32(seed);
  return {
    int: (n: number) => Math.floor(next() * n),
    bool: (p = 0.5) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
    subset: <T>(xs: readonly T[]): T[] => xs.filter(() => next() < 0.5),
  };
}
type Rng = ReturnType<typeof rng>;

/** JSON with object keys sorted: key order of records is not semantic. */
function canon(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x,
  );
}

function checkJoin<E>(name: string, schema: TableSchema<E>, gen: (r: Rng) => E, opts: { rawIdempotent: boolean }) {
  describe(`${name} merge`, () => {
    const m = (a: E, b: E) => schema.merge(structuredClone(a), structuredClone(b));
    test("keeps partition and sort key", () => {
      const r = rng(7);
      for (let i = 0; i < ROUNDS; i++) {
        const a = gen(r);
        const b = gen(r);
        const x = m(a, b);
        expect(schema.partitionKey(x)).toBe(schema.partitionKey(a));
        expect(schema.sortKey(x)).toBe(schema.sortKey(a));
      }
    });
    test("is commutative", () => {
      const r = rng(1);
      for (let i = 0; i < ROUNDS; i++) {
        const a = gen(r);
        const b = gen(r);
        expect(canon(m(a, b))).toBe(canon(m(b, a)));
      }
    });
    test("is associative", () => {
      const r = rng(2);
      for (let i = 0; i < ROUNDS; i++) {
        const [a, b, c] = [gen(r), gen(r), gen(r)];
        expect(canon(m(m(a, b), c))).toBe(canon(m(a, m(b, c))));
      }
    });
    test("is idempotent", () => {
      const r = rng(3);
      for (let i = 0; i < ROUNDS; i++) {
        const a = gen(r);
        const b = gen(r);
        // Any merged state is a fixed point, and absorbs its inputs again.
        const ab = m(a, b);
        expect(canon(m(ab, ab))).toBe(canon(ab));
        expect(canon(m(ab, a))).toBe(canon(ab));
        expect(canon(m(b, ab))).toBe(canon(ab));
        if (opts.rawIdempotent) expect(canon(m(a, a))).toBe(canon(a));
      }
    });
    test("order of a whole history does not matter", () => {
      const r = rng(4);
      for (let i = 0; i < ROUNDS / 10; i++) {
        const history = Array.from({ length: 6 }, () => gen(r));
        const forward = history.reduce(m);
        const shuffled = [...history].sort(() => (r.bool() ? 1 : -1));
        expect(canon(shuffled.reduce(m))).toBe(canon(forward));
      }
    });
  });
}

const TS = [100, 200, 300];
const KEY_IDS = ["GK1", "GK2", "GK3"];

checkJoin<BucketEntry>(
  "bucket",
  bucketSchema,
  (r) => {
    const deleted = r.bool(0.2);
    return {
      id: "b".repeat(64),
      created: r.pick(TS),
      deleted,
      keys: deleted
        ? {}
        : Object.fromEntries(r.subset(KEY_IDS).map((k) => [k, { ts: r.pick(TS), read: r.bool(), write: r.bool(), owner: r.bool() }])),
      website: { ts: r.pick([0, ...TS]), v: r.bool() ? null : { indexDocument: r.pick(["index.html", "i.htm"]), errorDocument: r.pick([null, "err.html"]) } },
      // Entries written before CORS existed have no cors field at all.
      ...(r.bool(0.2)
        ? {}
        : {
            cors: {
              ts: r.pick([0, ...TS]),
              v: r.bool()
                ? null
                : [{ id: null, allowedOrigins: [r.pick(["*", "https://a.example"])], allowedMethods: ["GET"], allowedHeaders: [], exposeHeaders: [], maxAgeSeconds: r.pick([null, 60]) }],
            },
          }),
    };
  },
  // A deleted bucket as deleteBucket writes it still carries its website; the merge nulls it.
  { rawIdempotent: false },
);

checkJoin<BucketAliasEntry>(
  "bucket_alias",
  bucketAliasSchema,
  (r) => ({ name: "photos", bucketId: r.pick([null, "a".repeat(64), "c".repeat(64)]), ts: r.pick(TS) }),
  { rawIdempotent: true },
);

checkJoin<BucketCounterEntry>(
  "bucket_counter",
  bucketCounterSchema,
  (r) => ({
    bucketId: "b".repeat(64),
    // A node's publications differ only when their timestamps do (one publisher per node id).
    nodes: Object.fromEntries(
      r.subset(["n1", "n2", "n3"]).map((n) => {
        const ts = r.pick(TS);
        return [n, { ts, objects: ts % 7, bytes: ts * 10, uploads: ts % 2 }];
      }),
    ),
  }),
  { rawIdempotent: true },
);

checkJoin<KeyEntry>(
  "key (live keys)",
  keySchema,
  (r) => ({
    id: "GK1",
    secret: "secret-of-GK1",
    created: r.pick(TS),
    deleted: false,
    name: { ts: r.pick(TS), v: r.pick(["a", "b"]) },
    allowCreateBucket: { ts: r.pick(TS), v: r.bool() },
  }),
  { rawIdempotent: true },
);

checkJoin<VersionEntry>(
  "version",
  versionSchema,
  (r) => ({ uuid: "v1", deleted: r.bool(), backlink: r.bool() ? null : { kind: "object", bucketId: "b1", key: "k" } }),
  { rawIdempotent: true },
);

checkJoin<VersionBlockEntry>(
  "version_block",
  versionBlockSchema,
  // A block at (uuid, part, offset) is an immutable fact.
  () => ({ uuid: "v1", part: 1, offset: 1048576, hash: "ab".repeat(32), size: 1048576 }),
  { rawIdempotent: true },
);

checkJoin<BlockRefEntry>("block_ref", blockRefSchema, (r) => ({ hash: "cd".repeat(32), version: "v1", deleted: r.bool() }), {
  rawIdempotent: true,
});

/** How copies of one upload may have seen it closed: not recorded (older rows), completed (racing Completes), aborted. */
const UPLOAD_OUTCOMES: (UploadOutcome | undefined)[] = [undefined, { kind: "completed", etag: "e1-1" }, { kind: "completed", etag: "e2-2", checksum: "AAAA-2" }, { kind: "aborted" }];
checkJoin<UploadEntry>(
  "mpu",
  uploadSchema,
  (r) => {
    const open: UploadEntry = {
      bucketId: "b1",
      key: "big.bin",
      uploadId: "u1",
      timestamp: 500,
      deleted: false,
      headers: [["content-type", "application/x-test"]],
      checksumAlgorithm: "CRC32",
    };
    if (r.bool()) return open;
    const outcome = r.pick(UPLOAD_OUTCOMES);
    return outcome ? { ...open, deleted: true, outcome: structuredClone(outcome) } : { ...open, deleted: true };
  },
  { rawIdempotent: true },
);

/** Uploads of one part number: each is a version with its own timestamp (ties possible). */
const PART_UPLOADS: UploadPartEntry[] = [
  { uploadId: "u1", part: 3, timestamp: 100, version: "pv-a", etag: "e-a", size: 10 },
  { uploadId: "u1", part: 3, timestamp: 100, version: "pv-b", etag: "e-b", size: 11, checksum: "AAAA" },
  { uploadId: "u1", part: 3, timestamp: 200, version: "pv-c", etag: "e-c", size: 12 },
  { uploadId: "u1", part: 3, timestamp: 150, version: "pv-d", etag: "e-d", size: 13 },
];
checkJoin<UploadPartEntry>("mpu_part", uploadPartSchema, (r) => structuredClone(r.pick(PART_UPLOADS)), { rawIdempotent: true });

/**
 * Object versions: each uuid has a fixed timestamp and one life: uploading then complete
 * (with fixed data), or uploading then aborted. Copies of an entry hold any subset of the
 * versions, each at any point of its life.
 */
interface Life {
  uuid: string;
  timestamp: number;
  end: ObjectVersion["state"];
  /** How it starts: uploading, unless a one-block PUT writes it pending. */
  start?: ObjectVersion["state"];
}
const ONE_BLOCK = { kind: "blocks" as const, meta: { size: 9000, etag: "e8", headers: [] }, singleBlock: "8".repeat(64) };
const TAGS_AT_WRITE = { timestamp: 70, set: [["a", "1"]] as [string, string][] };
const LIVES: Life[] = [
  { uuid: "v01", timestamp: 10, end: { kind: "complete", data: { kind: "inline", meta: { size: 1, etag: "e1", headers: [] }, base64: "AQ==" } } },
  { uuid: "v02", timestamp: 20, end: { kind: "aborted" } },
  { uuid: "v03", timestamp: 30, end: { kind: "complete", data: { kind: "deleteMarker" } } },
  { uuid: "v04", timestamp: 30, end: { kind: "complete", data: { kind: "blocks", meta: { size: 9, etag: "e4", headers: [["x-amz-meta-a", "1"]] } } } },
  { uuid: "v05", timestamp: 40, end: { kind: "aborted" } },
  { uuid: "v06", timestamp: 50, end: { kind: "complete", data: { kind: "blocks", meta: { size: 7, etag: "e6", headers: [] } } } },
  { uuid: "v07", timestamp: 60, end: { kind: "complete", data: { kind: "inline", meta: { size: 0, etag: "e7", headers: [] }, base64: "" } } },
  // One-block PUTs: pending, then completed (and maybe retagged after), or aborted.
  { uuid: "v08", timestamp: 70, start: { kind: "pending", data: ONE_BLOCK, tags: TAGS_AT_WRITE }, end: { kind: "complete", data: ONE_BLOCK, tags: { timestamp: 90, set: [["b", "2"]] } } },
  { uuid: "v09", timestamp: 45, start: { kind: "pending", data: ONE_BLOCK }, end: { kind: "aborted" } },
  { uuid: "v10", timestamp: 55, start: { kind: "pending", data: ONE_BLOCK }, end: { kind: "complete", data: ONE_BLOCK } },
];
function genObject(r: Rng): ObjectEntry {
  const versions = r.subset(LIVES).map(
    (l): ObjectVersion => ({
      uuid: l.uuid,
      timestamp: l.timestamp,
      state: r.bool(0.4) ? structuredClone(l.start ?? { kind: "uploading", multipart: false, headers: [], uploader: "node1" }) : structuredClone(l.end),
    }),
  );
  // Copies as a node holds them are sorted and pruned; raw inserts may be in any order.
  return { bucketId: "b1", key: "k", versions: r.bool() ? versions.reverse() : versions };
}
checkJoin<ObjectEntry>("object", objectSchema, genObject, { rawIdempotent: false });

describe("object merge, history-level properties", () => {
  test("the merged entry holds the newest complete version of all inputs, and every newer version", () => {
    const r = rng(9);
    for (let i = 0; i < ROUNDS; i++) {
      const inputs = [genObject(r), genObject(r), genObject(r)];
      const merged = inputs.reduce((a, b) => objectSchema.merge(a, b));
      const all = inputs.flatMap((o) => o.versions);
      const completes = all.filter((v) => v.state.kind === "complete").sort((a, b) => a.timestamp - b.timestamp || (a.uuid < b.uuid ? -1 : 1));
      const newest = completes[completes.length - 1];
      const uuids = merged.versions.map((v) => v.uuid);
      expect(new Set(uuids).size).toBe(uuids.length);
      if (newest) {
        expect(merged.versions[0]!.uuid).toBe(newest.uuid);
        const later = [...new Set(all.filter((v) => v.timestamp > newest.timestamp || (v.timestamp === newest.timestamp && v.uuid > newest.uuid)).map((v) => v.uuid))];
        expect(uuids.slice(1).sort()).toEqual(later.sort());
      } else {
        expect(uuids.sort()).toEqual([...new Set(all.map((v) => v.uuid))].sort());
      }
    }
  });
});
