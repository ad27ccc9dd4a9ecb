// The shape of every table's entries, as TypeBox schemas mirroring the interfaces of the model
// files (object.ts, version.ts, block-ref.ts, upload.ts, bucket.ts, bucket-alias.ts, key.ts,
// counter.ts): an entry that comes from another node is checked against its table's schema
// before it is merged (table/peer-entries.ts), so a buggy or older node cannot store a malformed
// entry or crash a merge. Optional fields stay optional; extra fields are let through (a newer
// node may add an optional field). Identifiers that name blocks and versions are checked as
// such (util/ids). Each schema is compiled once, here, at module load.
//
// The `mirrors` checks below fail to compile when a model interface and its schema disagree
// (a field or a variant added to one and not the other): change both together.
import { Type, type Static, type TLiteral, type TSchema } from "@sinclair/typebox";
import type { CrdtTableName } from "../db/migrations";
import { ENCRYPTION_ALG } from "../block/encryption";
import type { EntryValidator } from "../table/schema";
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm } from "../util/checksum";
import { BlockHashSchema, VersionUuidSchema, type BlockHash, type NodeId, type VersionUuid } from "../util/ids";
import { BallotSchema } from "../table/cas-register";
import { compileValidator } from "../util/validator";
import type { BlockRefEntry } from "./block-ref";
import type { BucketEntry, CorsRule, LifecycleRule, WebsiteConfig } from "./bucket";
import type { BucketAliasEntry } from "./bucket-alias";
import type { BucketCounterEntry } from "./counter";
import type { KeyEntry } from "./key";
import type { ObjectData, ObjectEntry, ObjectMeta, VersionState } from "./object";
import type { UploadEntry, UploadOutcome, UploadPartEntry } from "./upload";
import type { VersionBlockEntry, VersionEntry } from "./version";

const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
const Lww = <T extends TSchema>(v: T) => Type.Object({ ts: Type.Number(), v });
const Count = Type.Integer({ minimum: 0 });
const StringPairs = Type.Array(Type.Tuple([Type.String(), Type.String()]));

const ChecksumAlgorithmSchema = Type.Union(CHECKSUM_ALGORITHMS.map((a) => Type.Literal(a)) as TLiteral<ChecksumAlgorithm>[]);
const ChecksumTypeSchema = Type.Union([Type.Literal("FULL_OBJECT"), Type.Literal("COMPOSITE")]);
const EncryptionRecordSchema = Type.Object({ alg: Type.Literal(ENCRYPTION_ALG), salt: Type.String(), keyMac: Type.String() });

// ---- object (object.ts)

const ObjectMetaSchema = Type.Object({
  size: Count,
  etag: Type.String(),
  headers: StringPairs,
  checksum: Type.Optional(Type.Object({ algorithm: ChecksumAlgorithmSchema, value: Type.String(), type: ChecksumTypeSchema })),
  encryption: Type.Optional(EncryptionRecordSchema),
  parts: Type.Optional(Type.Array(Count)),
  partChecksums: Type.Optional(Type.Array(Type.String())),
});

const ObjectDataSchema = Type.Union([
  Type.Object({ kind: Type.Literal("deleteMarker") }),
  Type.Object({ kind: Type.Literal("inline"), meta: ObjectMetaSchema, base64: Type.String() }),
  Type.Object({ kind: Type.Literal("blocks"), meta: ObjectMetaSchema, singleBlock: Type.Optional(BlockHashSchema) }),
]);

const VersionStateSchema = Type.Union([
  Type.Object({
    kind: Type.Literal("uploading"),
    multipart: Type.Boolean(),
    headers: StringPairs,
    checksumAlgorithm: Type.Optional(ChecksumAlgorithmSchema),
    uploader: Type.String(),
  }),
  Type.Object({
    kind: Type.Literal("complete"),
    data: ObjectDataSchema,
    tags: Type.Optional(Type.Object({ timestamp: Type.Number(), set: StringPairs })),
  }),
  Type.Object({
    kind: Type.Literal("pending"),
    data: Type.Object({ kind: Type.Literal("blocks"), meta: ObjectMetaSchema, singleBlock: BlockHashSchema }),
    tags: Type.Optional(Type.Object({ timestamp: Type.Number(), set: StringPairs })),
  }),
  Type.Object({
    kind: Type.Literal("proposed"),
    data: ObjectDataSchema,
    tags: Type.Optional(Type.Object({ timestamp: Type.Number(), set: StringPairs })),
    ballot: BallotSchema,
  }),
  Type.Object({ kind: Type.Literal("aborted") }),
]);

/** A version a conditional write proposes to the key's register: complete, nothing else. */
export const ProposedVersionSchema = Type.Object({
  uuid: VersionUuidSchema,
  timestamp: Type.Number(),
  state: Type.Object({ kind: Type.Literal("complete"), data: ObjectDataSchema, tags: Type.Optional(Type.Object({ timestamp: Type.Number(), set: StringPairs })) }),
});

/** Checks a value a peer proposes to accept in a key's register (table/cas-register.ts). */
export const proposedVersionValidator = compileValidator(ProposedVersionSchema);

export const ObjectEntrySchema = Type.Object({
  bucketId: Type.String(),
  key: Type.String(),
  versions: Type.Array(Type.Object({ uuid: VersionUuidSchema, timestamp: Type.Number(), state: VersionStateSchema })),
});

// ---- version, version_block (version.ts), block_ref (block-ref.ts)

export const VersionEntrySchema = Type.Object({
  uuid: VersionUuidSchema,
  deleted: Type.Boolean(),
  backlink: Nullable(
    Type.Union([
      Type.Object({ kind: Type.Literal("object"), bucketId: Type.String(), key: Type.String() }),
      Type.Object({ kind: Type.Literal("upload"), uploadId: Type.String(), part: Count }),
    ]),
  ),
});

export const VersionBlockEntrySchema = Type.Object({
  uuid: VersionUuidSchema,
  part: Count,
  offset: Count,
  hash: BlockHashSchema,
  size: Count,
});

export const BlockRefEntrySchema = Type.Object({ hash: BlockHashSchema, version: VersionUuidSchema, deleted: Type.Boolean() });

// ---- mpu, mpu_part (upload.ts)

const UploadOutcomeSchema = Type.Union([
  Type.Object({ kind: Type.Literal("completed"), etag: Type.String(), checksum: Type.Optional(Type.String()) }),
  Type.Object({ kind: Type.Literal("aborted") }),
]);

export const UploadEntrySchema = Type.Object({
  bucketId: Type.String(),
  key: Type.String(),
  uploadId: Type.String(),
  timestamp: Type.Number(),
  deleted: Type.Boolean(),
  headers: StringPairs,
  checksumAlgorithm: Type.Optional(ChecksumAlgorithmSchema),
  tags: Type.Optional(StringPairs),
  encryption: Type.Optional(EncryptionRecordSchema),
  checksumType: Type.Optional(ChecksumTypeSchema),
  outcome: Type.Optional(UploadOutcomeSchema),
});

export const UploadPartEntrySchema = Type.Object({
  uploadId: Type.String(),
  part: Count,
  timestamp: Type.Number(),
  /** The part's version uuid; "" in the marker row of a closed upload (upload.ts closedMarker). */
  version: Type.Union([VersionUuidSchema, Type.Literal("")]),
  etag: Type.String(),
  size: Count,
  checksum: Type.Optional(Type.String()),
  deleted: Type.Optional(Type.Boolean()),
});

// ---- bucket (bucket.ts), bucket_alias, key, bucket_counter

const RedirectProtocolSchema = Nullable(Type.Union([Type.Literal("http"), Type.Literal("https")]));

const WebsiteConfigSchema = Type.Object({
  indexDocument: Type.String(),
  errorDocument: Nullable(Type.String()),
  routingRules: Type.Optional(
    Type.Array(
      Type.Object({
        condition: Nullable(Type.Object({ keyPrefixEquals: Nullable(Type.String()), httpErrorCodeReturnedEquals: Nullable(Type.Number()) })),
        redirect: Type.Object({
          protocol: RedirectProtocolSchema,
          hostName: Nullable(Type.String()),
          replaceKeyPrefixWith: Nullable(Type.String()),
          replaceKeyWith: Nullable(Type.String()),
          httpRedirectCode: Nullable(Type.Number()),
        }),
      }),
    ),
  ),
  redirectAllRequestsTo: Type.Optional(Type.Object({ hostName: Type.String(), protocol: RedirectProtocolSchema })),
});

const CorsRuleSchema = Type.Object({
  id: Nullable(Type.String()),
  allowedOrigins: Type.Array(Type.String()),
  allowedMethods: Type.Array(Type.String()),
  allowedHeaders: Type.Array(Type.String()),
  exposeHeaders: Type.Array(Type.String()),
  maxAgeSeconds: Nullable(Type.Number()),
});

const LifecycleRuleSchema = Type.Object({
  id: Nullable(Type.String()),
  enabled: Type.Boolean(),
  filter: Type.Object({
    prefix: Type.String(),
    sizeGreaterThan: Nullable(Type.Number()),
    sizeLessThan: Nullable(Type.Number()),
    tags: Type.Optional(StringPairs),
    syntax: Type.Optional(Type.Union([Type.Literal("prefix"), Type.Literal("filter"), Type.Literal("and"), Type.Literal("none")])),
    prefixElement: Type.Optional(Type.Boolean()),
  }),
  expiration: Nullable(Type.Union([Type.Object({ days: Type.Number() }), Type.Object({ date: Type.String() })])),
  expiredObjectDeleteMarker: Type.Optional(Type.Boolean()),
  abortIncompleteUploadDays: Nullable(Type.Number()),
});

export const BucketEntrySchema = Type.Object({
  id: Type.String(),
  created: Type.Number(),
  deleted: Type.Boolean(),
  keys: Type.Record(Type.String(), Type.Object({ ts: Type.Number(), read: Type.Boolean(), write: Type.Boolean(), owner: Type.Boolean() })),
  website: Lww(Nullable(WebsiteConfigSchema)),
  cors: Type.Optional(Lww(Nullable(Type.Array(CorsRuleSchema)))),
  quotas: Type.Optional(Lww(Type.Object({ maxSize: Nullable(Type.Number()), maxObjects: Nullable(Type.Number()) }))),
  lifecycle: Type.Optional(Lww(Nullable(Type.Array(LifecycleRuleSchema)))),
  tags: Type.Optional(Lww(Nullable(StringPairs))),
});

export const BucketAliasEntrySchema = Type.Object({ name: Type.String(), bucketId: Nullable(Type.String()), ts: Type.Number() });

export const KeyEntrySchema = Type.Object({
  id: Type.String(),
  secret: Type.String(),
  created: Type.Number(),
  deleted: Type.Boolean(),
  name: Lww(Type.String()),
  allowCreateBucket: Lww(Type.Boolean()),
});

export const BucketCounterEntrySchema = Type.Object({
  bucketId: Type.String(),
  nodes: Type.Record(Type.String(), Type.Object({ objects: Type.Number(), bytes: Type.Number(), uploads: Type.Number(), ts: Type.Number() })),
});

// ---- the schema of each table, and the compile-time checks that they mirror the model

export const ENTRY_SCHEMAS = {
  object: ObjectEntrySchema,
  version: VersionEntrySchema,
  version_block: VersionBlockEntrySchema,
  block_ref: BlockRefEntrySchema,
  mpu: UploadEntrySchema,
  mpu_part: UploadPartEntrySchema,
  bucket: BucketEntrySchema,
  bucket_alias: BucketAliasEntrySchema,
  key: KeyEntrySchema,
  bucket_counter: BucketCounterEntrySchema,
} as const satisfies Record<CrdtTableName, TSchema>;

/** The entry checks the table layer runs on what peers send (TableSchema.validateEntry). */
export const ENTRY_VALIDATORS: Readonly<Record<CrdtTableName, EntryValidator>> = Object.fromEntries(
  Object.entries(ENTRY_SCHEMAS).map(([table, schema]) => {
    const validator = compileValidator(schema);
    return [table, (entry: unknown) => validator.problem(entry)];
  }),
) as Record<CrdtTableName, EntryValidator>;

/** The model types ids as plain strings; the schemas brand them. Compared without brands. */
type Unbranded<T> = T extends BlockHash | NodeId | VersionUuid ? string : T extends object ? { [K in keyof T]: Unbranded<T[K]> } : T;
type Mirrors<S extends TSchema, E> = [Unbranded<Static<S>>] extends [E] ? ([E] extends [Unbranded<Static<S>>] ? true : false) : false;

// The nested types too: a deep comparison alone can miss a difference far down.
const mirrors: {
  object: Mirrors<typeof ObjectEntrySchema, ObjectEntry>;
  versionState: Mirrors<typeof VersionStateSchema, VersionState>;
  objectData: Mirrors<typeof ObjectDataSchema, ObjectData>;
  objectMeta: Mirrors<typeof ObjectMetaSchema, ObjectMeta>;
  uploadOutcome: Mirrors<typeof UploadOutcomeSchema, UploadOutcome>;
  websiteConfig: Mirrors<typeof WebsiteConfigSchema, WebsiteConfig>;
  corsRule: Mirrors<typeof CorsRuleSchema, CorsRule>;
  lifecycleRule: Mirrors<typeof LifecycleRuleSchema, LifecycleRule>;
  version: Mirrors<typeof VersionEntrySchema, VersionEntry>;
  version_block: Mirrors<typeof VersionBlockEntrySchema, VersionBlockEntry>;
  block_ref: Mirrors<typeof BlockRefEntrySchema, BlockRefEntry>;
  mpu: Mirrors<typeof UploadEntrySchema, UploadEntry>;
  mpu_part: Mirrors<typeof UploadPartEntrySchema, UploadPartEntry>;
  bucket: Mirrors<typeof BucketEntrySchema, BucketEntry>;
  bucket_alias: Mirrors<typeof BucketAliasEntrySchema, BucketAliasEntry>;
  key: Mirrors<typeof KeyEntrySchema, KeyEntry>;
  bucket_counter: Mirrors<typeof BucketCounterEntrySchema, BucketCounterEntry>;
} = {
  object: true,
  versionState: true,
  objectData: true,
  objectMeta: true,
  uploadOutcome: true,
  websiteConfig: true,
  corsRule: true,
  lifecycleRule: true,
  version: true,
  version_block: true,
  block_ref: true,
  mpu: true,
  mpu_part: true,
  bucket: true,
  bucket_alias: true,
  key: true,
  bucket_counter: true,
};
void mirrors;
