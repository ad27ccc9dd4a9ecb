// PostObject: an upload from an HTML form (`POST /<bucket>`, multipart/form-data), as browsers
// send it after a server signed a policy (e.g. the AWS SDK's createPresignedPost). There is no
// signed request: the form carries a base64 policy (expiry and conditions on every field) and
// a SigV4 signature of that policy. The file part is streamed into blocks like a PUT body.
import { MAX_KEY_BYTES, MAX_PUT_SIZE } from "../../util/limits";
import { parseDecimal } from "../../util/decimal";
import type { BucketEntry } from "../../model/bucket";
import { storeServices, type S3Services } from "./context";
import { S3Error } from "./errors";
import { refuseUnsupportedFormFields } from "./unsupported";
import { readPostForm, type FormFile } from "./form-data";
import { etagHeader, STORED_HEADERS, storedHeaders } from "./headers";
import { writeObject } from "../../model/object-writer";
import { checkQuotas } from "./quota";
import { OBJECT_TAGS_MAX, parseTaggingXml } from "./tag-set";
import { parseSseC, sseCEtag, sseCResponseHeaders } from "./sse-c";
import { newEncryptionRecord } from "../../block/encryption";
import { deriveSigningKey, S3_SERVICE, SCOPE_TERMINATOR, SIGV4_ALGORITHM, signatureHex, signaturesEqual } from "./sigv4";
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
/** Fields that need no policy condition (AWS's rule; `x-ignore-*` too). */
const EXEMPT_FIELDS = new Set(["x-amz-signature", "file", "policy"]);

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
  const expiration = typeof doc.expiration === "string" ? Date.parse(doc.expiration) : NaN;
  if (Number.isNaN(expiration)) throw new S3Error("InvalidPolicyDocument", "The policy needs an ISO 8601 expiration");
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

/** Checks every condition against the form (and the bucket), and that no field is left uncovered. */
export function checkPolicyConditions(conditions: readonly Condition[], fields: ReadonlyMap<string, string>, bucketName: string): void {
  const valueOf = (field: string) => (field === "bucket" ? bucketName : (fields.get(field) ?? ""));
  for (const c of conditions) {
    if (c.kind === "eq" && valueOf(c.field) !== c.value) throw denied(`Policy Condition failed: ["eq", "$${c.field}", "${c.value}"]`);
    if (c.kind === "starts-with" && !valueOf(c.field).startsWith(c.prefix)) throw denied(`Policy Condition failed: ["starts-with", "$${c.field}", "${c.prefix}"]`);
  }
  const covered = new Set(conditions.flatMap((c) => (c.kind === "content-length-range" ? [] : [c.field])));
  const extra = [...fields.keys()].filter((f) => !EXEMPT_FIELDS.has(f) && !f.startsWith("x-ignore-") && !covered.has(f));
  if (extra.length > 0) throw denied(`Extra input fields: ${extra.join(", ")}`);
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
    const now = Date.now();
    const accessKeyId = verifyPolicySignature(fields, policy, services);
    const { expiration, conditions } = parsePolicy(policy);
    if (now > expiration) throw denied("Policy expired.");
    checkPolicyConditions(conditions, fields, bucketName);
    const bucket = resolveBucket(bucketName);
    if (!bucket) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
    const perms = bucket.keys[accessKeyId];
    if (!perms?.write) throw new S3Error("AccessDenied", `This key does not have write permission on bucket ${bucketName}`);
    // What a form asks for and Bunker does not do (encryption, tags, lock...) is refused as on PutObject.
    refuseUnsupportedFormFields(fields);
    if (!file) throw new S3Error("InvalidArgument", "POST requires exactly one file upload per request");
    const rawKey = fields.get("key");
    if (rawKey === undefined || rawKey === "") throw new S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'");
    const key = rawKey.replaceAll("${filename}", file.filename);
    if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error("KeyTooLongError", "Your key is too long");
    if (key.includes("\u0000")) throw new S3Error("InvalidArgument", "Object keys may not contain NUL");

    const metadata = new Headers();
    // Form fields become metadata as the same-named headers do on PutObject.
    for (const [name, value] of fields) {
      if (!STORED_HEADERS.includes(name) && !name.startsWith("x-amz-meta-")) continue;
      try {
        metadata.set(name, value);
      } catch {
        throw new S3Error("InvalidArgument", `The form field ${name} is not a valid header value (line breaks?)`);
      }
    }
    if (!metadata.has("content-type") && file.contentType) metadata.set("content-type", file.contentType);
    const headers = storedHeaders(metadata);
    // The form's `tagging` field is a <Tagging> document, not the header's query form.
    const tagging = fields.get("tagging");
    const tags = tagging === undefined ? [] : parseTaggingXml(tagging, OBJECT_TAGS_MAX);
    const sseC = parseSseC(new Map([...fields].map(([name, value]) => [name.toLowerCase(), value])));
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
      checksumAlgorithms: [],
      tags,
      encryption: sealing?.dataKey,
      describe: async (body) => {
        if (range && body.size < range.min) throw new S3Error("EntityTooSmall", `Your proposed upload is smaller than the minimum allowed size (${range.min} bytes)`);
        await checkQuotas(target, body.size);
        const etag = sealing ? sseCEtag() : Buffer.from(body.md5).toString("hex");
        return { size: body.size, etag, headers, ...(sealing ? { encryption: sealing.record } : {}) };
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
