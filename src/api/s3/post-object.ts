// PostObject: an upload from an HTML form (`POST /<bucket>`, multipart/form-data), as browsers
// send it after a server signed a policy (e.g. the AWS SDK's createPresignedPost). There is no
// signed request: the form carries a base64 policy (expiry and conditions on every field) and
// a signature of that policy, SigV4 (`x-amz-credential`, `x-amz-signature`...) or SigV2
// (`AWSAccessKeyId`, `signature`). The file part is streamed into blocks like a PUT body.
import { MAX_KEY_BYTES, MAX_PUT_SIZE } from "../../util/limits";
import { parseDecimal } from "../../util/decimal";
import type { BucketEntry } from "../../model/bucket";
import { storeServices, type S3Services } from "./context";
import { S3Error } from "./errors";
import { refuseUnsupportedFormFields } from "./unsupported";
import { readPostForm, type FormFile } from "./form-data";
import { declaredDigests, etagHeader, headerValueFromText, STORED_HEADERS, storedHeaders, verifyDigests } from "./headers";
import { writeObject } from "../../model/object-writer";
import { checkQuotas } from "./quota";
import { OBJECT_TAGS_MAX, parseTaggingXml } from "./tag-set";
import { parseSseC, bodyEtag, sseCResponseHeaders } from "./sse-c";
import { newEncryptionRecord } from "../../block/encryption";
import { deriveSigningKey, S3_SERVICE, SCOPE_TERMINATOR, SIGV4_ALGORITHM, signatureHex, signaturesEqual } from "./sigv4";
import { signatureV2 } from "./sigv2";
import { xmlDocument } from "./xml";

/** Most bytes of a refused form's file read (and dropped) before the answer. */
const REFUSED_BODY_DRAIN_MAX = 1024 * 1024;
/**
 * Time from the start of a POST until its form is checked (the fields before the file, at
 * most MAX_FORM_FIELDS_BYTES) or, when refused, until the answer (with at most
 * REFUSED_BODY_DRAIN_MAX of its file read). A browser sends its fields in well under a second;
 * without this bound a client trickling a byte every few seconds, which the body's idle
 * timeout never catches, would hold the connection for as long as it likes, unauthenticated.
 */
const POST_FORM_DEADLINE_MS = 30_000;
/** Fields that need no policy condition, by signature version (AWS's rule; `x-ignore-*` too). */
const EXEMPT_FIELDS = {
  v4: new Set(["x-amz-signature", "file", "policy"]),
  v2: new Set(["awsaccesskeyid", "signature", "file", "policy"]),
} as const;
type SignatureVersion = keyof typeof EXEMPT_FIELDS;
/** AWS's policy expiration: an ISO 8601 UTC time, e.g. 2007-12-01T12:00:00.000Z. */
const POLICY_EXPIRATION_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

type Condition =
  | { kind: "eq"; field: string; value: string }
  | { kind: "starts-with"; field: string; prefix: string }
  | { kind: "content-length-range"; min: number; max: number };

function denied(why: string): S3Error {
  return new S3Error("AccessDenied", `Invalid according to Policy: ${why}`);
}

/** `$field` or `field` (as in `{"bucket": ...}`), lowercased as form field names are. */
function fieldName(raw: unknown): string {
  if (typeof raw !== "string") throw new S3Error("InvalidPolicyDocument", "A policy condition names its field with a string");
  return (raw.startsWith("$") ? raw.slice(1) : raw).toLowerCase();
}

function asInt(raw: unknown, what: string): number {
  const n = typeof raw === "string" ? parseDecimal(raw, 0, Number.MAX_SAFE_INTEGER) : raw;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw new S3Error("InvalidPolicyDocument", `${what} must be a non-negative integer`);
  return n;
}

/** The policy document's expiry and conditions; anything unreadable is refused. */
export function parsePolicy(base64: string): { expiration: number; conditions: Condition[] } {
  let doc: { expiration?: unknown; conditions?: unknown };
  try {
    doc = JSON.parse(Buffer.from(base64, "base64").toString("utf8"));
  } catch {
    throw new S3Error("InvalidPolicyDocument", "The policy is not base64-encoded JSON");
  }
  // Strictly ISO 8601: Date.parse would also read "2030-01-01 10:00:00.5+00:00" or "Jan 1 2030".
  const expiration = typeof doc.expiration === "string" && POLICY_EXPIRATION_RE.test(doc.expiration) ? Date.parse(doc.expiration) : NaN;
  if (Number.isNaN(expiration)) throw new S3Error("InvalidPolicyDocument", "The policy needs an expiration in ISO 8601 form, e.g. 2030-12-01T12:00:00.000Z");
  if (!Array.isArray(doc.conditions)) throw new S3Error("InvalidPolicyDocument", "The policy needs a conditions array");
  const conditions = doc.conditions.map((c): Condition => {
    if (Array.isArray(c)) {
      const op = typeof c[0] === "string" ? c[0].toLowerCase() : "";
      if (op === "eq" && c.length === 3 && typeof c[2] === "string") return { kind: "eq", field: fieldName(c[1]), value: c[2] };
      if (op === "starts-with" && c.length === 3 && typeof c[2] === "string") return { kind: "starts-with", field: fieldName(c[1]), prefix: c[2] };
      if (op === "content-length-range" && c.length === 3) return { kind: "content-length-range", min: asInt(c[1], "content-length-range min"), max: asInt(c[2], "content-length-range max") };
    } else if (c !== null && typeof c === "object" && Object.keys(c).length === 1) {
      const [name, value] = Object.entries(c)[0]!;
      if (typeof value === "string") return { kind: "eq", field: fieldName(name), value };
    }
    throw new S3Error("InvalidPolicyDocument", `Unsupported policy condition: ${JSON.stringify(c)}`);
  });
  return { expiration, conditions };
}

/**
 * Checks every condition against the form (and the bucket), and that no field is left
 * uncovered. The bucket counts as a field, the one the URL names: a policy must say which
 * bucket it is for (as Ceph's s3-tests expect of AWS, test_post_object_missing_policy_condition).
 */
export function checkPolicyConditions(conditions: readonly Condition[], fields: ReadonlyMap<string, string>, bucketName: string, version: SignatureVersion): void {
  const valueOf = (field: string) => (field === "bucket" ? bucketName : (fields.get(field) ?? ""));
  for (const c of conditions) {
    if (c.kind === "eq" && valueOf(c.field) !== c.value) throw denied(`Policy Condition failed: ["eq", "$${c.field}", "${c.value}"]`);
    if (c.kind === "starts-with" && !valueOf(c.field).startsWith(c.prefix)) throw denied(`Policy Condition failed: ["starts-with", "$${c.field}", "${c.prefix}"]`);
  }
  const covered = new Set(conditions.flatMap((c) => (c.kind === "content-length-range" ? [] : [c.field])));
  const names = new Set([...fields.keys(), "bucket"]);
  // A checksum field needs no condition either (as s3-tests test_post_object_upload_checksum
  // expects of AWS): it can only make the upload stricter.
  const extra = [...names].filter((f) => !EXEMPT_FIELDS[version].has(f) && !f.startsWith("x-ignore-") && !f.startsWith("x-amz-checksum-") && !covered.has(f));
  if (extra.length > 0) throw denied(`Extra input fields: ${extra.join(", ")}`);
}

/** Which signature the form carries; undefined when it has no credential field at all. */
function signatureVersionOf(fields: ReadonlyMap<string, string>): SignatureVersion | undefined {
  const v4 = ["x-amz-algorithm", "x-amz-credential", "x-amz-signature"].some((f) => fields.has(f));
  const v2 = fields.has("awsaccesskeyid") || fields.has("signature");
  if (v4 && v2) throw new S3Error("InvalidArgument", "A POST form is signed with AWSAccessKeyId and signature (SigV2) or with the x-amz-* fields (SigV4), not both");
  return v4 ? "v4" : v2 ? "v2" : undefined;
}

/** The form's SigV2 signature of its policy: base64 HMAC-SHA1 of the base64 policy; returns the key id. */
function verifyPolicySignatureV2(fields: ReadonlyMap<string, string>, policy: string, services: S3Services): string {
  const accessKeyId = fields.get("awsaccesskeyid");
  const signature = fields.get("signature");
  if (!accessKeyId) throw new S3Error("InvalidArgument", "Bucket POST must contain a field named 'AWSAccessKeyId'.  If it is specified, please check the order of the fields.");
  if (!signature) throw new S3Error("InvalidArgument", "Bucket POST must contain a field named 'Signature'.  If it is specified, please check the order of the fields.");
  const key = services.model.getKey(accessKeyId);
  if (!key) throw new S3Error("InvalidAccessKeyId", "The access key ID you provided does not exist");
  if (!signaturesEqual(signatureV2(key.secret, policy), signature)) throw new S3Error("SignatureDoesNotMatch", "The policy signature does not match");
  return accessKeyId;
}

/** The form's signature of its policy, checked like a SigV4 request's; returns the key id. */
function verifyPolicySignature(fields: ReadonlyMap<string, string>, policy: string, services: S3Services): string {
  if (fields.get("x-amz-algorithm") !== SIGV4_ALGORITHM) throw new S3Error("InvalidArgument", `POST requires x-amz-algorithm = ${SIGV4_ALGORITHM}`);
  const credential = fields.get("x-amz-credential");
  const signature = fields.get("x-amz-signature");
  if (!credential || !signature || !fields.get("x-amz-date")) throw new S3Error("InvalidArgument", "POST requires x-amz-credential, x-amz-date and x-amz-signature");
  const parts = credential.split("/");
  if (parts.length !== 5 || parts[3] !== S3_SERVICE || parts[4] !== SCOPE_TERMINATOR || !/^\d{8}$/.test(parts[1]!))
    throw new S3Error("AuthorizationQueryParametersError", `Malformed x-amz-credential: ${credential}`);
  const [accessKeyId, date, region] = parts as [string, string, string];
  if (region !== services.settings.region) throw new S3Error("AuthorizationQueryParametersError", `The credential names region ${region}; this server is ${services.settings.region}`);
  const key = services.model.getKey(accessKeyId);
  if (!key) throw new S3Error("InvalidAccessKeyId", "The access key ID you provided does not exist");
  const expected = signatureHex(deriveSigningKey(key.secret, date, region, S3_SERVICE), policy);
  if (!signaturesEqual(expected, signature.toLowerCase())) throw new S3Error("SignatureDoesNotMatch", "The policy signature does not match");
  return accessKeyId;
}

/**
 * The key field with `${filename}` replaced by the file's name ("" when the file part names
 * none). A function replacement: "$&" in a file name is no pattern.
 */
function expandKey(key: string | undefined, file: FormFile | undefined): string | undefined {
  if (key === undefined || !file) return key;
  return key.replaceAll("${filename}", () => file.filename);
}

/** Counts the file's bytes as they stream, cutting it off past `max`. */
async function* bounded(chunks: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array> {
  let size = 0;
  for await (const c of chunks) {
    size += c.length;
    if (size > max) throw new S3Error("EntityTooLarge", `Your proposed upload exceeds the maximum allowed size (${max} bytes)`);
    yield c;
  }
}

function redirectLocation(target: string, bucket: string, key: string, etag: string): string | undefined {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  url.searchParams.set("bucket", bucket);
  url.searchParams.set("key", key);
  url.searchParams.set("etag", etagHeader(etag));
  return url.toString();
}

export async function postObject(request: Request, services: S3Services, bucketName: string, resolveBucket: (name: string) => BucketEntry | undefined): Promise<Response> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!request.body) throw new S3Error("MalformedPOSTRequest", "The body of your POST request is empty");
  const deadline = Date.now() + POST_FORM_DEADLINE_MS;
  const { fields, file } = await readPostForm(request.body, contentType, deadline);
  let consumed = false;
  try {
    const policy = fields.get("policy");
    if (!policy) throw new S3Error("AccessDenied", "Anonymous uploads are not allowed: the form needs a signed policy");
    const version = signatureVersionOf(fields);
    if (version === undefined) {
      throw new S3Error("InvalidArgument", "A POST policy must be signed: with x-amz-algorithm, x-amz-credential, x-amz-date and x-amz-signature (SigV4) or AWSAccessKeyId and signature (SigV2)");
    }
    const now = Date.now();
    const accessKeyId = version === "v2" ? verifyPolicySignatureV2(fields, policy, services) : verifyPolicySignature(fields, policy, services);
    const { expiration, conditions } = parsePolicy(policy);
    if (now > expiration) throw denied("Policy expired.");
    // "All variables within the form are expanded before the POST is validated" (AWS): the
    // conditions on the key see it with ${filename} replaced.
    const key = expandKey(fields.get("key"), file);
    checkPolicyConditions(conditions, key === undefined ? fields : new Map([...fields, ["key", key]]), bucketName, version);
    const bucket = resolveBucket(bucketName);
    if (!bucket) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
    const perms = bucket.keys[accessKeyId];
    if (!perms?.write) throw new S3Error("AccessDenied", `This key does not have write permission on bucket ${bucketName}`);
    // What a form asks for and Bunker does not do (encryption, tags, lock...) is refused as on PutObject.
    refuseUnsupportedFormFields(fields);
    if (!file) throw new S3Error("InvalidArgument", "POST requires exactly one file upload per request");
    if (key === undefined || key === "") throw new S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'");
    if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error("KeyTooLongError", "Your key is too long");
    if (key.includes("\u0000")) throw new S3Error("InvalidArgument", "Object keys may not contain NUL");

    const metadata = new Headers();
    // Form fields become metadata as the same-named headers do on PutObject.
    // A field is text: its header value is its UTF-8 bytes, as a PutObject header sent by the
    // same client would carry them.
    for (const [name, value] of fields) {
      if (!STORED_HEADERS.includes(name) && !name.startsWith("x-amz-meta-")) continue;
      metadata.set(name, headerValueFromText(`The form field ${name}`, value));
    }
    if (!metadata.has("content-type") && file.contentType) metadata.set("content-type", file.contentType);
    const headers = storedHeaders(metadata);
    // The form's `tagging` field is a <Tagging> document, not the header's query form.
    const tagging = fields.get("tagging");
    const tags = tagging === undefined ? [] : parseTaggingXml(tagging, OBJECT_TAGS_MAX);
    const lowered = new Map([...fields].map(([name, value]) => [name.toLowerCase(), value]));
    const sseC = parseSseC(lowered);
    // Checksum fields are read as their headers are on PutObject, and verified the same way.
    const digests = declaredDigests(new Headers([...lowered].filter(([name]) => name.startsWith("x-amz-checksum-"))));
    const sealing = sseC && newEncryptionRecord(sseC.key);
    const range = conditions.find((c): c is Extract<Condition, { kind: "content-length-range" }> => c.kind === "content-length-range");
    const target = { bucket, key, services };

    // A bucket already at a quota refuses before any byte is stored; the real size is
    // checked again once known.
    await checkQuotas(target, 1);
    consumed = true;
    const { meta } = await writeObject(storeServices(services), { bucketId: bucket.id, key }, {
      headers,
      declaredLength: undefined,
      chunks: bounded(file.chunks, Math.min(range?.max ?? MAX_PUT_SIZE, MAX_PUT_SIZE)),
      checksumAlgorithms: digests.checksumAlgorithm ? [digests.checksumAlgorithm] : [],
      tags,
      encryption: sealing?.dataKey,
      describe: async (body) => {
        if (range && body.size < range.min) throw new S3Error("EntityTooSmall", `Your proposed upload is smaller than the minimum allowed size (${range.min} bytes)`);
        await checkQuotas(target, body.size);
        const etag = bodyEtag(body.md5, sealing?.dataKey);
        const checksum = verifyDigests(digests, body, new Map());
        return { size: body.size, etag, headers, ...(checksum ? { checksum } : {}), ...(sealing ? { encryption: sealing.record } : {}) };
      },
    });

    const etag = etagHeader(meta.etag);
    const echoed = sseC ? sseCResponseHeaders(sseC.keyMd5) : {};
    const location = `${new URL(request.url).origin}/${encodeURIComponent(bucketName)}/${key.split("/").map(encodeURIComponent).join("/")}`;
    const redirectTo = fields.get("success_action_redirect") ?? fields.get("redirect");
    const redirect = redirectTo ? redirectLocation(redirectTo, bucketName, key, meta.etag) : undefined;
    if (redirect) return new Response(null, { status: 303, headers: { location: redirect, etag, ...echoed } });
    const status = fields.get("success_action_status");
    if (status === "201") {
      const xml = xmlDocument("PostResponse", { Location: location, Bucket: bucketName, Key: key, ETag: etag }, { xmlns: undefined });
      return new Response(xml, { status: 201, headers: { "content-type": "application/xml", etag, location, ...echoed } });
    }
    return new Response(null, { status: status === "200" ? 200 : 204, headers: { etag, location, ...echoed } });
  } catch (err) {
    // A refused form's file is read (not stored) so the client sees the answer rather than a
    // reset connection, but only so far: past that the connection is closed after the answer.
    // (A file cut off midway, e.g. past its size range, has left unread bytes behind.)
    const drained = !file || (!consumed && (await drainAtMost(file, REFUSED_BODY_DRAIN_MAX, deadline)));
    if (!drained && err instanceof S3Error) throw new S3Error(err.code, err.message, { ...err.headers, connection: "close" });
    throw err;
  }
}

/** Reads and drops up to `max` bytes until `deadline`; true when the file (and body) ended within them. */
async function drainAtMost(file: FormFile, max: number, deadline: number): Promise<boolean> {
  const timer = setTimeout(() => file.cancel(), Math.max(0, deadline - Date.now()));
  let seen = 0;
  try {
    for await (const c of file.chunks) {
      seen += c.length;
      if (seen > max) return false; // leaving the loop cancels the rest of the body
    }
    return true;
  } catch {
    return false; // cut off by the deadline, or a malformed or truncated rest
  } finally {
    clearTimeout(timer);
  }
}
