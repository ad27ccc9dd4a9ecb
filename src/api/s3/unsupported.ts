// What Bunker refuses rather than silently ignore: request headers (and the PostObject form
// fields and query parameters that carry the same requests) asking for something Bunker does
// not do — encryption, tags, object lock, ACLs, storage classes, checks against AWS accounts,
// versions other than the only one an object has. One table, checked once per request by the
// router (and by PostObject for its form fields), before anything is read or stored, so a
// client never believes it got what it asked for. docs/s3-compatibility.md is the table in
// prose, operation by operation; a header absent from both is one we implement or one that
// is harmless to ignore (e.g. x-amz-request-payer: nobody is billed). ACLs are refused the
// way S3 refuses them on a bucket whose Object Ownership is BucketOwnerEnforced, which every
// Bunker bucket is (acl.ts).
import { CHECKSUM_ALGORITHMS } from "../../util/checksum";
import { ACLS_DISABLED } from "./acl";
import { S3Error, type S3ErrorCode } from "./errors";
import { checkVersionId } from "./version-id";

/** The operations the router dispatches, by their AWS names. */
export type RoutedOperation =
  | "ListBuckets"
  | "CreateBucket"
  | "HeadBucket"
  | "DeleteBucket"
  | "GetBucketLocation"
  | "GetBucketVersioning"
  | "ListObjects"
  | "ListObjectsV2"
  | "ListObjectVersions"
  | "ListMultipartUploads"
  | "PutObject"
  | "GetObject"
  | "HeadObject"
  | "GetObjectAttributes"
  | "DeleteObject"
  | "DeleteObjects"
  | "CopyObject"
  | "CreateMultipartUpload"
  | "UploadPart"
  | "UploadPartCopy"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "ListParts"
  | "PostObject"
  | "GetBucketWebsite"
  | "PutBucketWebsite"
  | "DeleteBucketWebsite"
  | "GetBucketCors"
  | "PutBucketCors"
  | "DeleteBucketCors"
  | "GetBucketLifecycleConfiguration"
  | "PutBucketLifecycleConfiguration"
  | "DeleteBucketLifecycle"
  | "GetObjectTagging"
  | "PutObjectTagging"
  | "DeleteObjectTagging"
  | "GetBucketAcl"
  | "PutBucketAcl"
  | "GetObjectAcl"
  | "PutObjectAcl"
  | "GetBucketOwnershipControls"
  | "PutBucketOwnershipControls"
  | "GetBucketPolicyStatus"
  | "GetBucketTagging"
  | "PutBucketTagging"
  | "DeleteBucketTagging";

/** Throws the S3 error that answers `value` of `name`, or returns when Bunker does what it asks. */
type Check = (value: string, name: string) => void;

interface Rule {
  /** Where the request carries it: a header (lowercase name or pattern) or a query parameter. */
  header?: string | RegExp;
  query?: string;
  /** The PostObject form field carrying the same request, when PostObject is among `ops`
   * and the field is not named like the header (form field names are lowercase). */
  field?: string;
  ops: readonly (RoutedOperation | "*")[];
  check: Check;
}

/** Refuses every value; the message names the header, never its value (an SSE-C key is secret). */
function refuse(code: S3ErrorCode, why: string): Check {
  return (_value, name) => {
    throw new S3Error(code, `${name}: ${why}`);
  };
}

/** Accepts the listed values (what Bunker does anyway, in any case); refuses the others with 501. */
function only(accepted: readonly string[], why: string): Check {
  const lower = accepted.map((a) => a.toLowerCase());
  return (value, name) => {
    if (!lower.includes(value.trim().toLowerCase())) throw new S3Error("NotImplemented", `${name}: ${value}: ${why}`);
  };
}

/** Accepts the listed values; refuses the others as malformed (400), as AWS does. */
function oneOf(valid: readonly string[]): Check {
  return (value, name) => {
    if (!valid.includes(value.trim().toUpperCase())) throw new S3Error("InvalidArgument", `${name}: ${value}: expected one of ${valid.join(", ")}`);
  };
}

/** Operations that write a new object and would have stored it encrypted, tagged or locked. */
const OBJECT_WRITES = ["PutObject", "CopyObject", "CreateMultipartUpload", "PostObject"] as const;
/** Operations that name an existing object or upload, none of which is SSE-C encrypted. */
/** Every object checksum algorithm Bunker computes and verifies (util/checksum). */
const SUPPORTED_CHECKSUMS = new Set(CHECKSUM_ALGORITHMS.map((a) => a.toLowerCase()));
/** Checksum algorithms of the S3 API that Bunker does not compute. */
const UNCOMPUTED_CHECKSUMS = new Set(["md5", "sha512", "xxhash64", "xxhash3", "xxhash128"]);
/** `x-amz-checksum-*` headers that are not a checksum value. */
const CHECKSUM_CONTROL_HEADERS = new Set(["algorithm", "mode", "type"]);
/** Any `x-amz-checksum-<algorithm>` header. */
const CHECKSUM_VALUE_HEADER = /^x-amz-checksum-(.+)$/;

const NO_SSE = "Bunker does not encrypt data at rest (no SSE-S3, SSE-KMS or DSSE-KMS): nothing would be encrypted";
const NO_LOCK = "Bunker does not implement object lock (retention, legal hold): nothing would be protected from deletion";
const NO_ACLS = "Bunker does not implement ACLs: access is granted per key and bucket (only private and bucket-owner-full-control, which describe that, are accepted)";
const NO_ACCOUNTS = "Bunker has no AWS accounts to check the bucket owner against";
/** AWS's message for InvalidBucketAclWithObjectOwnership. */
const NO_BUCKET_ACLS = "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting";
const ACLS_ENFORCED = "Bunker's buckets are BucketOwnerEnforced: access is granted per key and bucket; only private and bucket-owner-full-control, which describe that, are accepted";
/** Every canned ACL S3 has. */
const CANNED_ACLS = ["private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read", "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write"];
/** The canned ACLs that say what Bunker does: full control for the owner alone. */
const OWNER_ONLY_ACLS = ["private", "bucket-owner-full-control"];

/**
 * x-amz-acl as S3 answers it on a BucketOwnerEnforced bucket: a value that is no canned ACL is
 * 400 InvalidArgument; one granting more than the owner's full control is `refusal`
 * (AccessControlListNotSupported, or InvalidBucketAclWithObjectOwnership on CreateBucket).
 */
function cannedAcl(refusal: "AccessControlListNotSupported" | "InvalidBucketAclWithObjectOwnership"): Check {
  const message = refusal === "AccessControlListNotSupported" ? ACLS_DISABLED : NO_BUCKET_ACLS;
  return (value, name) => {
    const acl = value.trim().toLowerCase();
    if (OWNER_ONLY_ACLS.includes(acl)) return;
    if (!CANNED_ACLS.includes(acl)) throw new S3Error("InvalidArgument", `${name}: ${value}: not a canned ACL (${CANNED_ACLS.join(", ")})`);
    throw new S3Error(refusal, `${name}: ${value}: ${message} (${ACLS_ENFORCED})`);
  };
}

/**
 * The table. A rule applies to a request when its operation is listed and the header (or query
 * parameter, or PostObject field) is present; `check` then accepts the value or throws.
 */
export const RULES: readonly Rule[] = [
  // Server-side encryption with S3 or KMS keys (AES256, aws:kms, aws:kms:dsse, ...).
  { header: "x-amz-server-side-encryption", ops: OBJECT_WRITES, check: refuse("NotImplemented", NO_SSE) },
  { header: /^x-amz-server-side-encryption-(aws-kms-key-id|context)$/, ops: OBJECT_WRITES, check: refuse("NotImplemented", NO_SSE) },
  { header: "x-amz-server-side-encryption-bucket-key-enabled", ops: OBJECT_WRITES, check: only(["false"], NO_SSE) },
  { header: "x-amz-tagging-directive", ops: ["CopyObject"], check: oneOf(["COPY", "REPLACE"]) },
  // Object lock: a client that asked for a retention date must never believe it got one.
  { header: /^x-amz-object-lock-/, ops: OBJECT_WRITES, check: refuse("NotImplemented", NO_LOCK) },
  { header: "x-amz-bucket-object-lock-enabled", ops: ["CreateBucket"], check: only(["false"], NO_LOCK) },
  // ACLs: "private" is what Bunker does (only keys granted on the bucket get in), and so is
  // "bucket-owner-full-control" (there is no object owner apart from the bucket's keys). Any
  // other ACL, and any grant header (even one naming the owner: the table cannot tell), is
  // refused as S3 refuses ACLs when Object Ownership is BucketOwnerEnforced.
  { header: "x-amz-acl", field: "acl", ops: [...OBJECT_WRITES, "PutBucketAcl", "PutObjectAcl"], check: cannedAcl("AccessControlListNotSupported") },
  { header: "x-amz-acl", ops: ["CreateBucket"], check: cannedAcl("InvalidBucketAclWithObjectOwnership") },
  { header: /^x-amz-grant-/, ops: [...OBJECT_WRITES, "PutBucketAcl", "PutObjectAcl"], check: refuse("AccessControlListNotSupported", `${ACLS_DISABLED} (${ACLS_ENFORCED})`) },
  { header: /^x-amz-grant-/, ops: ["CreateBucket"], check: refuse("InvalidBucketAclWithObjectOwnership", `${NO_BUCKET_ACLS} (${ACLS_ENFORCED})`) },
  // The other settings would enable ACLs.
  { header: "x-amz-object-ownership", ops: ["CreateBucket"], check: only(["BucketOwnerEnforced"], NO_ACLS) },
  { header: "x-amz-bucket-namespace", ops: ["CreateBucket"], check: refuse("NotImplemented", "Bunker has one global bucket namespace") },
  // Storage classes: every object is stored one way, which S3 calls STANDARD; a client asking
  // for another class would read its object back where S3 would not (archive classes), or be
  // told it has a class it does not have.
  { header: "x-amz-storage-class", ops: OBJECT_WRITES, check: only(["STANDARD"], "Bunker stores every object in the STANDARD storage class") },
  // Checks against AWS accounts.
  { header: "x-amz-expected-bucket-owner", ops: ["*"], check: refuse("NotImplemented", NO_ACCOUNTS) },
  { header: "x-amz-source-expected-bucket-owner", ops: ["*"], check: refuse("NotImplemented", NO_ACCOUNTS) },
  // Checksums of algorithms Bunker does not compute (e.g. SHA512, XXHASH64) would go unchecked.
  { header: CHECKSUM_VALUE_HEADER, ops: ["PutObject", "UploadPart"], check: unsupportedChecksum },
  // The same for a form's checksum fields (post-object.ts verifies the others).
  { header: CHECKSUM_VALUE_HEADER, ops: ["PostObject"], check: unsupportedChecksum },
  // A copy keeps its source's checksum: it cannot take one of another algorithm.
  { header: "x-amz-checksum-algorithm", ops: ["CopyObject"], check: refuse("NotImplemented", "Bunker keeps the source's checksum on a copy and cannot compute another") },
  // An upload's parts would go unchecked (x-amz-checksum-type is checked by the handler).
  { header: "x-amz-checksum-algorithm", ops: ["CreateMultipartUpload"], check: uncomputedAlgorithm },
  // CompleteMultipartUpload checks the object checksum it is sent (multipart.ts), not a size.
  { header: CHECKSUM_VALUE_HEADER, ops: ["CompleteMultipartUpload"], check: completeChecksum },
  { header: "x-amz-mp-object-size", ops: ["CompleteMultipartUpload"], check: refuse("NotImplemented", "Bunker does not check the object size on CompleteMultipartUpload") },
  // CopyObject does not check conditions on its destination.
  // Appends and the conditions of directory buckets.
  { header: "x-amz-write-offset-bytes", ops: ["PutObject"], check: refuse("NotImplemented", "Bunker does not implement appends") },
  { header: "x-amz-if-match-last-modified-time", ops: ["DeleteObject"], check: refuse("NotImplemented", "Bunker implements conditional deletes on If-Match only") },
  { header: "x-amz-if-match-size", ops: ["DeleteObject"], check: refuse("NotImplemented", "Bunker implements conditional deletes on If-Match only") },
  { header: "x-amz-if-match-initiated-time", ops: ["AbortMultipartUpload"], check: refuse("NotImplemented", "Bunker does not implement conditions on AbortMultipartUpload") },
  // Versions: an object's only version is "null".
  { query: "versionId", ops: ["GetObject", "HeadObject", "GetObjectAttributes", "DeleteObject", "GetObjectTagging", "PutObjectTagging", "DeleteObjectTagging", "GetObjectAcl", "PutObjectAcl"], check: (v) => checkVersionId(v) },
];

function unsupportedChecksum(_value: string, name: string): void {
  const algorithm = CHECKSUM_VALUE_HEADER.exec(name)![1]!;
  if (CHECKSUM_CONTROL_HEADERS.has(algorithm) || SUPPORTED_CHECKSUMS.has(algorithm)) return;
  throw new S3Error("NotImplemented", `${name}: Bunker does not compute ${algorithm} checksums (only ${CHECKSUM_ALGORITHMS.join(", ")})`);
}

/** S3's algorithms Bunker does not compute are 501; a name S3 does not know either is the handler's 400. */
function uncomputedAlgorithm(value: string, name: string): void {
  if (UNCOMPUTED_CHECKSUMS.has(value.trim().toLowerCase()))
    throw new S3Error("NotImplemented", `${name}: ${value}: Bunker does not compute ${value.trim().toUpperCase()} checksums (only ${CHECKSUM_ALGORITHMS.join(", ")})`);
}


function completeChecksum(_value: string, name: string): void {
  const algorithm = CHECKSUM_VALUE_HEADER.exec(name)![1]!;
  // The object checksum built from the parts' is checked by the handler (multipart.ts).
  if (CHECKSUM_CONTROL_HEADERS.has(algorithm) || SUPPORTED_CHECKSUMS.has(algorithm)) return;
  throw new S3Error("NotImplemented", `${name}: Bunker does not compute ${algorithm} checksums`);
}

function appliesTo(rule: Rule, op: RoutedOperation): boolean {
  return rule.ops.includes("*") || rule.ops.includes(op);
}

function headerMatches(rule: Rule, name: string): boolean {
  if (rule.header === undefined) return false;
  return typeof rule.header === "string" ? rule.header === name : rule.header.test(name);
}

/** The rules of one operation, picked from the table once. */
interface OperationRules {
  all: readonly Rule[];
  /**
   * When no rule of the operation names its header by a pattern: each named header with its
   * rules, names sorted as Headers iterates them, so that refusals come in the same order.
   */
  byName?: readonly (readonly [string, readonly Rule[]])[];
}

/** By operation (a bounded set: RoutedOperation). */
const rulesByOperation = new Map<RoutedOperation, OperationRules>();

function rulesOf(op: RoutedOperation): OperationRules {
  let rules = rulesByOperation.get(op);
  if (rules) return rules;
  const all = RULES.filter((r) => appliesTo(r, op));
  let byName: Map<string, Rule[]> | undefined = new Map();
  for (const rule of all) {
    if (rule.header === undefined) continue;
    if (typeof rule.header !== "string") {
      byName = undefined;
      break;
    }
    byName.set(rule.header, [...(byName.get(rule.header) ?? []), rule]);
  }
  rules = { all, byName: byName && [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) };
  rulesByOperation.set(op, rules);
  return rules;
}

/**
 * Refuses a request carrying anything the table says Bunker does not do for `op`. Called by
 * the router once the operation is known and authorized, before the handler reads the body.
 */
export function refuseUnsupported(op: RoutedOperation, headers: Headers, query: URLSearchParams): void {
  const { all: rules, byName } = rulesOf(op);
  for (const rule of rules) {
    if (rule.query !== undefined && query.has(rule.query)) rule.check(query.get(rule.query)!, rule.query);
  }
  if (byName) {
    // Only exact names: looked up, rather than every header walked.
    for (const [name, named] of byName) {
      const value = headers.get(name);
      if (value !== null) for (const rule of named) rule.check(value, name);
    }
    return;
  }
  headers.forEach((value, name) => {
    const n = name.toLowerCase();
    for (const rule of rules) if (headerMatches(rule, n)) rule.check(value, n);
  });
}

/**
 * The same refusals for the fields of a PostObject form (lowercase names), where a field
 * carries what a header carries on PutObject (e.g. `tagging` for x-amz-tagging).
 */
export function refuseUnsupportedFormFields(fields: ReadonlyMap<string, string>): void {
  const rules = RULES.filter((r) => appliesTo(r, "PostObject") && r.query === undefined);
  for (const [field, value] of fields) {
    const n = field.toLowerCase();
    for (const rule of rules) if (rule.field === n || (rule.field === undefined && headerMatches(rule, n))) rule.check(value, n);
  }
}
