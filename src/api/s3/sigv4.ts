// AWS Signature Version 4 verification for the S3 API: the Authorization
// header form and presigned (query-string) URLs. Owns the canonical request
// rules (URI, query, headers), the signing-key derivation, the clock checks
// and the decision of how the body is authenticated (PayloadMode). Chunked
// bodies are verified later by chunked.ts with the AuthContext returned here.
//
// Only "AWS4-HMAC-SHA256" is accepted here (no SigV4a); SigV2 is sigv2.ts's, which the
// router picks for requests that carry it.

import { parseDecimal } from "../../util/decimal.ts";
import { S3Error } from "./errors.ts";

export const SIGV4_ALGORITHM = "AWS4-HMAC-SHA256";
export const S3_SERVICE = "s3";
export const SCOPE_TERMINATOR = "aws4_request";
/** AWS rejects header-signed requests whose time is more than 15 minutes off. */
export const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;
/** X-Amz-Expires upper bound: one week (AWS's). */
export const MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600;
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
export const STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
export const STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
export const STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/**
 * x-amz-* headers that may travel unsigned: both are bound to the signature
 * anyway (the content hash is the canonical request's last line, the date is
 * in the string to sign; presigned requests ignore the content-hash header).
 */
const UNSIGNED_AMZ_HEADERS_ALLOWED: ReadonlySet<string> = new Set(["x-amz-content-sha256", "x-amz-date"]);

const Q_ALGORITHM = "X-Amz-Algorithm";
const Q_CREDENTIAL = "X-Amz-Credential";
const Q_DATE = "X-Amz-Date";
const Q_EXPIRES = "X-Amz-Expires";
const Q_SIGNED_HEADERS = "X-Amz-SignedHeaders";
const Q_SIGNATURE = "X-Amz-Signature";
const Q_CONTENT_SHA256 = "X-Amz-Content-Sha256";

export interface SignedRequest {
  method: string;
  /** Path exactly as the client sent it (percent-encoding untouched). */
  rawPath: string;
  /** Query exactly as sent, without the leading "?". */
  rawQuery: string;
  headers: Headers;
}

export type PayloadMode =
  | { kind: "unsigned" }
  | { kind: "sha256"; hex: string }
  | { kind: "streaming-signed" }
  | { kind: "streaming-signed-trailer" }
  | { kind: "streaming-unsigned-trailer" };

export interface AuthContext {
  accessKeyId: string;
  payload: PayloadMode;
  signingKey: Uint8Array;
  /** The request's own signature: seeds the chunk-signature chain. */
  seedSignature: string;
  /** ISO 8601 basic timestamp, e.g. 20130524T000000Z. */
  amzDate: string;
  /** <yyyymmdd>/<region>/s3/aws4_request */
  scope: string;
}

// ---------------------------------------------------------------------------
// Primitives

const encoder = new TextEncoder();

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

export function hmacSha256(key: string | Uint8Array, data: string | Uint8Array): Uint8Array {
  const h = new Bun.CryptoHasher("sha256", toBytes(key));
  h.update(data);
  const d = h.digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export function sha256Hex(data: string | Uint8Array): string {
  return Bun.SHA256.hash(data, "hex") as string;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function deriveSigningKeyUncached(secret: string, date: string, region: string, service: string): Uint8Array {
  const kDate = hmacSha256(`AWS4${secret}`, date);
  const kRegion = hmacSha256(kDate, region);
  const kService = hmacSha256(kRegion, service);
  return hmacSha256(kService, SCOPE_TERMINATOR);
}

/**
 * Signing keys change once a day per key: caching them saves four HMACs per request. One
 * entry per secret (the newest scope it signed with), looked up by the secret string itself,
 * which the key table hands out as the same object every time: no key string is built per
 * request. Bounded: past SIGNING_KEY_CACHE_MAX secrets the cache starts again.
 */
const SIGNING_KEY_CACHE_MAX = 1024;
const signingKeys = new Map<string, { date: string; region: string; service: string; key: Uint8Array }>();

export function deriveSigningKey(secret: string, date: string, region: string, service: string): Uint8Array {
  const hit = signingKeys.get(secret);
  if (hit && hit.date === date && hit.region === region && hit.service === service) return hit.key;
  const key = deriveSigningKeyUncached(secret, date, region, service);
  if (!hit && signingKeys.size >= SIGNING_KEY_CACHE_MAX) signingKeys.clear();
  signingKeys.set(secret, { date, region, service, key });
  return key;
}

/** Hex HMAC of a string to sign: the signature itself. */
export function signatureHex(signingKey: Uint8Array, stringToSign: string | Uint8Array): string {
  return new Bun.CryptoHasher("sha256", signingKey).update(stringToSign).digest("hex");
}

/**
 * How a client turned the header bytes it sent into the bytes it signed. node:http hands a
 * header value over as one Latin-1 character per byte received, and clients differ:
 * - "text": the UTF-8 encoding of those characters, trimmed as JavaScript trims (\s). Node
 *   clients (the AWS SDK for JavaScript) sign their text as UTF-8 but send each character as
 *   one Latin-1 byte, so "é" arrives as E9 and was signed as C3 A9.
 * - "bytes": the bytes as sent, only spaces and tabs trimmed. AWS verifies so, and botocore
 *   sends and signs the same UTF-8 bytes; a JS \s would eat byte A0, inside many UTF-8
 *   sequences ("à" is C3 A0).
 * Each reading maps the bytes received one-to-one, so either authenticates exactly them. For
 * ASCII they agree: `headerReadings` offers "bytes" only for header text beyond ASCII.
 */
export type HeaderReading = "text" | "bytes";

export function headerReadings(headerText: string): HeaderReading[] {
  return /[^\x00-\x7f]/.test(headerText) ? ["text", "bytes"] : ["text"];
}

/** The bytes signed for `text` (a canonical request, a V2 string to sign) under a reading. */
export function signedBytes(text: string, reading: HeaderReading): Uint8Array {
  return reading === "text" ? encoder.encode(text) : latin1OrUtf8(text);
}

/**
 * What the hashers are given for `text` under a reading: a string is hashed as its UTF-8
 * encoding, the same bytes as signedBytes(text, "text") without building them first.
 */
function signedInput(text: string, reading: HeaderReading): string | Uint8Array {
  return reading === "text" ? text : latin1OrUtf8(text);
}

function latin1OrUtf8(text: string): Uint8Array {
  // Beyond Latin-1 a character is no byte received (only direct callers pass such text).
  return !/[^\x00-\xff]/.test(text) ? Buffer.from(text, "latin1") : encoder.encode(text);
}

/** A header value trimmed, with runs of blanks as one space (AWS's Trimall), under a reading. */
export function trimAll(v: string, reading: HeaderReading = "text"): string {
  if (reading === "text") {
    const t = v.trim();
    return BLANK_RE.test(t) ? t.replace(/\s+/g, " ") : t;
  }
  return v.replace(/^[ \t]+|[ \t]+$/g, "").replace(/[ \t]+/g, " ");
}
const BLANK_RE = /\s/;

/**
 * Constant-time comparison of two signatures (hex strings): every code unit is compared,
 * whatever the first difference (no buffers built for it, unlike timingSafeEqual).
 */
export function signaturesEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

// ---------------------------------------------------------------------------
// Percent-encoding, the way the AWS SDKs canonicalise: each byte outside the
// RFC 3986 unreserved set becomes %XX with upper-case hex. Input is decoded
// to bytes first, so "%7e", "%7E" and "~" all canonicalise alike.

const HEX_UPPER = "0123456789ABCDEF";
/** A path made only of unreserved characters and "/", which canonicalUri leaves as it is. */
const CANONICAL_PATH_RE = /^[A-Za-z0-9\-._~/]*$/;

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x2e || // .
    b === 0x5f || // _
    b === 0x7e // ~
  );
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Percent-decodes to raw bytes (not to a JS string, so invalid UTF-8 survives
 * the round trip). A "%" not followed by two hex digits is a literal "%".
 * Characters above ASCII (never in a URL Bun hands over, but possible in
 * direct callers) are taken as UTF-8.
 */
export function percentDecode(s: string, plusAsSpace: boolean): Uint8Array {
  const out = new Uint8Array(s.length * 3);
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && i + 2 < s.length) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        out[n++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
      out[n++] = c;
    } else if (c === 0x2b && plusAsSpace) {
      out[n++] = 0x20;
    } else if (c < 0x80) {
      out[n++] = c;
    } else {
      // Encode the code point (or surrogate pair) as UTF-8.
      let cp = c;
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; // lone surrogate, as TextEncoder does
      n += encoder.encodeInto(String.fromCodePoint(cp), out.subarray(n)).written;
    }
  }
  return out.subarray(0, n);
}

function uriEncodeBytes(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    s += isUnreserved(b) ? String.fromCharCode(b) : "%" + HEX_UPPER[b >> 4] + HEX_UPPER[b & 15];
  }
  return s;
}

/** Decode then re-encode one URI component (a path segment, a query name or value). */
export function canonicalizeComponent(raw: string, plusAsSpace = false): string {
  return uriEncodeBytes(percentDecode(raw, plusAsSpace));
}

// ---------------------------------------------------------------------------
// Canonical request pieces

/**
 * S3 canonical URI: the path as sent, each "/"-separated segment
 * re-encoded; no dot-segment removal, no slash merging, no double encoding
 * (those are the rules of other services, not S3's).
 */
export function canonicalUri(rawPath: string): string {
  if (rawPath === "") return "/";
  // Only unreserved characters and slashes (most paths): each segment is its own encoding.
  if (CANONICAL_PATH_RE.test(rawPath)) return rawPath;
  return rawPath
    .split("/")
    .map((seg) => canonicalizeComponent(seg))
    .join("/");
}

export interface CanonicalQueryOptions {
  /** Presigned URLs sign every parameter except the signature itself. */
  excludeSignature?: boolean;
  /** Read "+" as a space (form encoding) instead of a literal plus. */
  plusAsSpace?: boolean;
}

/** Raw query split into undecoded [name, value] pairs; a bare name gets "". */
export function splitRawQuery(rawQuery: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  if (rawQuery === "") return pairs;
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    pairs.push(eq < 0 ? [part, ""] : [part.slice(0, eq), part.slice(eq + 1)]);
  }
  return pairs;
}

export function canonicalQuery(rawQuery: string, opts: CanonicalQueryOptions = {}): string {
  if (rawQuery === "") return "";
  const plus = opts.plusAsSpace ?? false;
  const encoded: Array<[string, string]> = [];
  for (const [name, value] of splitRawQuery(rawQuery)) {
    const n = canonicalizeComponent(name, plus);
    if (opts.excludeSignature && n === Q_SIGNATURE) continue;
    encoded.push([n, canonicalizeComponent(value, plus)]);
  }
  // Encoded forms are pure ASCII, so code-unit order is byte order.
  encoded.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return encoded.map(([n, v]) => `${n}=${v}`).join("&");
}

/**
 * Canonical header lines ("name:value\n" each) for the signed header names,
 * in the order given. From a Headers object, repeated headers arrive already
 * joined with ", " (Fetch semantics), which AWS would have joined with ",":
 * a request that repeats a signed header therefore does not verify.
 * From an entry list, repeats are joined with "," as AWS specifies.
 */
export function canonicalHeaders(
  headers: Headers | Iterable<readonly [string, string]>,
  signedHeaders: readonly string[],
  reading: HeaderReading = "text",
): string {
  let get: (name: string) => string | undefined;
  if (headers instanceof Headers) {
    get = (name) => {
      const v = headers.get(name);
      return v === null ? undefined : trimAll(v, reading);
    };
  } else {
    const grouped = new Map<string, string[]>();
    for (const [name, value] of headers) {
      const key = name.toLowerCase();
      const list = grouped.get(key);
      if (list) list.push(trimAll(value, reading));
      else grouped.set(key, [trimAll(value, reading)]);
    }
    get = (name) => grouped.get(name)?.join(",");
  }
  let out = "";
  for (const name of signedHeaders) out += `${name}:${get(name) ?? ""}\n`;
  return out;
}

export interface CanonicalRequestParts {
  method: string;
  canonicalUri: string;
  canonicalQuery: string;
  /** As returned by canonicalHeaders(): one "name:value\n" line per header. */
  canonicalHeaders: string;
  /** Semicolon-joined lower-case names, as in the Authorization header. */
  signedHeaders: string;
  payloadHash: string;
}

export function buildCanonicalRequest(p: CanonicalRequestParts): string {
  return `${p.method}\n${p.canonicalUri}\n${p.canonicalQuery}\n${p.canonicalHeaders}\n${p.signedHeaders}\n${p.payloadHash}`;
}

/** `canonicalRequest` as text (hashed as UTF-8) or as the exact bytes signed (signedBytes). */
export function buildStringToSign(amzDate: string, scope: string, canonicalRequest: string | Uint8Array): string {
  return `${SIGV4_ALGORITHM}\n${amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
}

// ---------------------------------------------------------------------------
// Parsing the credentials

const AMZ_DATE_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const SCOPE_DATE_RE = /^\d{8}$/;
const SHA256_HEX_RE = /^[0-9a-fA-F]{64}$/;
const HEADER_NAME_RE = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** The last timestamp parsed: requests of the same second carry the same one. */
let lastAmzDate: { text: string; ms: number | undefined } = { text: "", ms: undefined };

/** Milliseconds since the epoch of an ISO 8601 basic timestamp, or undefined. */
export function parseAmzDate(s: string): number | undefined {
  if (s === lastAmzDate.text) return lastAmzDate.ms;
  const ms = parseAmzDateUncached(s);
  lastAmzDate = { text: s, ms };
  return ms;
}

function parseAmzDateUncached(s: string): number | undefined {
  const m = AMZ_DATE_RE.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, se] = m.map(Number) as [number, number, number, number, number, number, number];
  const t = Date.UTC(y, mo - 1, d, h, mi, se);
  // Reject rolled-over fields such as month 13 or hour 25.
  const back = new Date(t);
  if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || back.getUTCHours() !== h) return undefined;
  return t;
}

export function formatAmzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

export function parsePayloadMode(value: string): PayloadMode | undefined {
  switch (value) {
    case UNSIGNED_PAYLOAD:
      return { kind: "unsigned" };
    case STREAMING_SIGNED:
      return { kind: "streaming-signed" };
    case STREAMING_SIGNED_TRAILER:
      return { kind: "streaming-signed-trailer" };
    case STREAMING_UNSIGNED_TRAILER:
      return { kind: "streaming-unsigned-trailer" };
  }
  return SHA256_HEX_RE.test(value) ? { kind: "sha256", hex: value.toLowerCase() } : undefined;
}

interface ParsedCredential {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  terminator: string;
}

type AuthKind = "header" | "query";

/** Header auth reports parse errors as AuthorizationHeaderMalformed, query auth as AuthorizationQueryParametersError. */
function malformed(kind: AuthKind, detail: string): S3Error {
  return kind === "header"
    ? new S3Error("AuthorizationHeaderMalformed", `The authorization header is malformed; ${detail}`)
    : new S3Error("AuthorizationQueryParametersError", `Error parsing the X-Amz-Credential parameter; ${detail}`);
}

function parseCredential(kind: AuthKind, credential: string): ParsedCredential {
  const parts = credential.split("/");
  if (parts.length !== 5 || parts[0] === "") {
    throw malformed(
      kind,
      'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
    );
  }
  const [accessKeyId, date, region, service, terminator] = parts as [string, string, string, string, string];
  return { accessKeyId, date, region, service, terminator };
}

function checkScope(kind: AuthKind, c: ParsedCredential, region: string, amzDate: string): void {
  if (!SCOPE_DATE_RE.test(c.date)) throw malformed(kind, `incorrect date format "${c.date}". This date in the credential must be in the format "yyyyMMdd".`);
  if (c.region !== region) throw malformed(kind, `the region '${c.region}' is wrong; expecting '${region}'`);
  if (c.service !== S3_SERVICE) throw malformed(kind, `incorrect service "${c.service}". This endpoint belongs to "${S3_SERVICE}".`);
  if (c.terminator !== SCOPE_TERMINATOR) throw malformed(kind, `incorrect terminal "${c.terminator}". This endpoint uses "${SCOPE_TERMINATOR}".`);
  if (c.date !== amzDate.slice(0, 8)) {
    throw malformed(kind, `Invalid credential date "${c.date}". This date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`);
  }
}

/**
 * SignedHeaders lists already checked: a client sends the same few lists again and again.
 * Bounded: past SIGNED_HEADERS_CACHE_MAX lists the cache starts again.
 */
const SIGNED_HEADERS_CACHE_MAX = 256;
const signedHeaderLists = new Map<string, readonly string[]>();

function parseSignedHeaders(kind: AuthKind, value: string): readonly string[] {
  const known = signedHeaderLists.get(value);
  if (known) return known;
  const names = value.split(";");
  for (const n of names) {
    if (!HEADER_NAME_RE.test(n)) throw malformed(kind, `invalid SignedHeaders "${value}".`);
  }
  if (signedHeaderLists.size >= SIGNED_HEADERS_CACHE_MAX) signedHeaderLists.clear();
  signedHeaderLists.set(value, names);
  return names;
}

/** AWS refuses host-less signatures and x-amz-* headers that ride along unsigned. */
function checkSignedHeaderCoverage(signed: readonly string[], headers: Headers): void {
  const missing: string[] = [];
  if (!signed.includes("host")) missing.push("host");
  for (const name of headers.keys()) {
    if (name.startsWith("x-amz-") && !signed.includes(name) && !UNSIGNED_AMZ_HEADERS_ALLOWED.has(name)) missing.push(name);
  }
  if (missing.length > 0) {
    throw new S3Error(
      "AccessDenied",
      `There were headers present in the request which were not signed: ${missing.join(", ")}`,
    );
  }
}

function lookup(lookupSecret: (id: string) => string | undefined, accessKeyId: string): string {
  const secret = lookupSecret(accessKeyId);
  if (secret === undefined) {
    throw new S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
  }
  return secret;
}

/**
 * The header as SDKs write it: the three fields in order, no blanks inside values. What it
 * matches, the general parse below reads alike; anything else goes through that parse.
 */
const AUTHORIZATION_USUAL_RE = /^AWS4-HMAC-SHA256 Credential=([^\s,]+), ?SignedHeaders=([^\s,]+), ?Signature=([^\s,]+)$/;

/** Parses `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`. */
export function parseAuthorizationHeader(value: string): { credential: string; signedHeaders: string; signature: string } {
  const usual = AUTHORIZATION_USUAL_RE.exec(value);
  if (usual) return { credential: usual[1]!, signedHeaders: usual[2]!, signature: usual[3]! };
  const v = value.trim();
  const sp = v.search(/\s/);
  const algorithm = sp < 0 ? v : v.slice(0, sp);
  if (algorithm !== SIGV4_ALGORITHM) {
    throw new S3Error(
      "InvalidRequest",
      `The authorization mechanism you have provided is not supported. Please use ${SIGV4_ALGORITHM}.`,
    );
  }
  const fields = new Map<string, string>();
  for (const part of (sp < 0 ? "" : v.slice(sp + 1)).split(",")) {
    const p = part.trim();
    if (p === "") continue;
    const eq = p.indexOf("=");
    if (eq < 0) throw malformed("header", `the field "${p}" has no value.`);
    fields.set(p.slice(0, eq).trim(), p.slice(eq + 1).trim());
  }
  const credential = fields.get("Credential");
  const signedHeaders = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    throw malformed("header", "it must contain Credential, SignedHeaders and Signature.");
  }
  return { credential, signedHeaders, signature };
}

// ---------------------------------------------------------------------------
// Verification

function nowMs(opts: { now?: Date }): number {
  return opts.now ? opts.now.getTime() : Date.now();
}

/** True when the request carries SigV4 credentials of either form (else it is anonymous). */
export function requestHasAuth(req: SignedRequest): boolean {
  if (req.headers.has("authorization")) return true;
  return splitRawQuery(req.rawQuery).some(([n]) => {
    const name = canonicalizeComponent(n);
    return name === Q_ALGORITHM || name === Q_SIGNATURE || name === Q_CREDENTIAL || name === "Signature";
  });
}

export function verifyRequest(
  req: SignedRequest,
  lookupSecret: (accessKeyId: string) => string | undefined,
  opts: { region: string; now?: Date },
): AuthContext {
  const authorization = req.headers.get("authorization");
  const query = new Map<string, string>();
  for (const [n, v] of splitRawQuery(req.rawQuery)) {
    const name = Buffer.from(percentDecode(n, false)).toString("utf8");
    if (!query.has(name)) query.set(name, Buffer.from(percentDecode(v, false)).toString("utf8"));
  }
  const hasQueryAuth = query.has(Q_ALGORITHM) || query.has(Q_SIGNATURE) || query.has(Q_CREDENTIAL);
  if (authorization !== null) {
    if (hasQueryAuth) {
      throw new S3Error(
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
      );
    }
    return verifyHeaderAuth(req, authorization, lookupSecret, opts);
  }
  if (hasQueryAuth) return verifyPresigned(req, query, lookupSecret, opts);
  if (query.has("Signature") && query.has("AWSAccessKeyId")) {
    throw new S3Error(
      "InvalidRequest",
      `The authorization mechanism you have provided is not supported. Please use ${SIGV4_ALGORITHM}.`,
    );
  }
  throw new S3Error("AccessDenied", "Access Denied");
}

/**
 * Computes the signature under the canonical query as AWS SDKs build it
 * ("+" is a literal plus). Clients that form-encode a space as "+" sign it
 * as a space; that reading is tried only after the first fails. Non-ASCII
 * header bytes have two readings too (HeaderReading).
 */
function matchSignature(
  req: SignedRequest,
  signedHeaderNames: readonly string[],
  signedHeaders: string,
  payloadHash: string,
  excludeSignature: boolean,
  amzDate: string,
  scope: string,
  signingKey: Uint8Array,
  given: string,
): boolean {
  const uri = canonicalUri(req.rawPath);
  const plusReadings = req.rawQuery.includes("+") ? PLUS_READINGS_BOTH : PLUS_READINGS_LITERAL;
  const textHeaders = canonicalHeaders(req.headers, signedHeaderNames);
  for (const reading of headerReadings(textHeaders)) {
    const headers = reading === "text" ? textHeaders : canonicalHeaders(req.headers, signedHeaderNames, reading);
    for (const plusAsSpace of plusReadings) {
      const cr = buildCanonicalRequest({
        method: req.method.toUpperCase(),
        canonicalUri: uri,
        canonicalQuery: canonicalQuery(req.rawQuery, { excludeSignature, plusAsSpace }),
        canonicalHeaders: headers,
        signedHeaders,
        payloadHash,
      });
      const expected = signatureHex(signingKey, buildStringToSign(amzDate, scope, signedInput(cr, reading)));
      if (signaturesEqual(expected, given)) return true;
    }
  }
  return false;
}

const PLUS_READINGS_LITERAL = [false] as const;
const PLUS_READINGS_BOTH = [false, true] as const;

function signatureMismatch(): S3Error {
  return new S3Error(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
  );
}

function verifyHeaderAuth(
  req: SignedRequest,
  authorization: string,
  lookupSecret: (accessKeyId: string) => string | undefined,
  opts: { region: string; now?: Date },
): AuthContext {
  const parsed = parseAuthorizationHeader(authorization);
  const cred = parseCredential("header", parsed.credential);
  const signedNames = parseSignedHeaders("header", parsed.signedHeaders);

  // The request time: x-amz-date, else the Date header.
  let amzDate: string;
  let requestMs: number | undefined;
  const xAmzDate = req.headers.get("x-amz-date");
  if (xAmzDate !== null) {
    amzDate = xAmzDate;
    requestMs = parseAmzDate(xAmzDate);
  } else {
    const date = req.headers.get("date");
    const ms = date === null ? NaN : Date.parse(date);
    requestMs = Number.isFinite(ms) ? ms : undefined;
    amzDate = requestMs === undefined ? "" : formatAmzDate(requestMs);
  }
  if (requestMs === undefined) {
    throw new S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
  }
  checkScope("header", cred, opts.region, amzDate);
  checkSignedHeaderCoverage(signedNames, req.headers);

  const contentSha = req.headers.get("x-amz-content-sha256");
  if (contentSha === null) {
    throw new S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  }
  const payload = parsePayloadMode(contentSha);
  if (payload === undefined) {
    throw new S3Error(
      "InvalidArgument",
      `x-amz-content-sha256 must be ${UNSIGNED_PAYLOAD}, ${STREAMING_UNSIGNED_TRAILER}, ${STREAMING_SIGNED}, ${STREAMING_SIGNED_TRAILER} or a valid sha256 value.`,
    );
  }

  const secret = lookup(lookupSecret, cred.accessKeyId);
  if (Math.abs(nowMs(opts) - requestMs) > MAX_CLOCK_SKEW_MS) {
    throw new S3Error("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.");
  }

  const scope = `${cred.date}/${cred.region}/${cred.service}/${cred.terminator}`;
  const signingKey = deriveSigningKey(secret, cred.date, cred.region, cred.service);
  const ok = matchSignature(
    req,
    signedNames,
    parsed.signedHeaders,
    contentSha,
    false,
    amzDate,
    scope,
    signingKey,
    parsed.signature,
  );
  if (!ok) throw signatureMismatch();
  return { accessKeyId: cred.accessKeyId, payload, signingKey, seedSignature: parsed.signature, amzDate, scope };
}

/**
 * X-Amz-Expires, in [0, one week]. Out of that range AWS's message is kept but the answer is
 * 403 AccessDenied, as Ceph's s3-tests expect of AWS (test_object_raw_get_x_amz_expires_out_*,
 * not marked fails_on_aws): the URL is refused as an expired one is. Text that is no number at
 * all stays a malformed parameter (400).
 */
function presignExpiresSeconds(text: string): number {
  const expires = parseDecimal(text, 0, MAX_PRESIGN_EXPIRES_S);
  if (expires !== undefined) return expires;
  if (/^-[0-9]+$/.test(text)) throw new S3Error("AccessDenied", "X-Amz-Expires must be non-negative");
  if (/^[0-9]+$/.test(text)) {
    throw new S3Error(
      "AccessDenied",
      `X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be less than ${MAX_PRESIGN_EXPIRES_S} seconds`,
    );
  }
  throw new S3Error("AuthorizationQueryParametersError", "X-Amz-Expires should be a number");
}

function verifyPresigned(
  req: SignedRequest,
  query: ReadonlyMap<string, string>,
  lookupSecret: (accessKeyId: string) => string | undefined,
  opts: { region: string; now?: Date },
): AuthContext {
  const algorithm = query.get(Q_ALGORITHM);
  const credential = query.get(Q_CREDENTIAL);
  const amzDate = query.get(Q_DATE);
  const expiresRaw = query.get(Q_EXPIRES);
  const signedHeaders = query.get(Q_SIGNED_HEADERS);
  const signature = query.get(Q_SIGNATURE);
  if (
    algorithm === undefined ||
    credential === undefined ||
    amzDate === undefined ||
    expiresRaw === undefined ||
    signedHeaders === undefined ||
    signature === undefined
  ) {
    throw new S3Error(
      "AuthorizationQueryParametersError",
      "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
    );
  }
  if (algorithm !== SIGV4_ALGORITHM) {
    throw new S3Error("AuthorizationQueryParametersError", `X-Amz-Algorithm only supports "${SIGV4_ALGORITHM}"`);
  }
  const requestMs = parseAmzDate(amzDate);
  if (requestMs === undefined) {
    throw new S3Error(
      "AuthorizationQueryParametersError",
      "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
    );
  }
  const expires = presignExpiresSeconds(expiresRaw);
  const cred = parseCredential("query", credential);
  checkScope("query", cred, opts.region, amzDate);
  const signedNames = parseSignedHeaders("query", signedHeaders);
  checkSignedHeaderCoverage(signedNames, req.headers);

  // Presigned URLs normally sign UNSIGNED-PAYLOAD; a client may instead put
  // the hash it signed in the query (the JS SDK puts UNSIGNED-PAYLOAD there).
  const payloadHash = query.get(Q_CONTENT_SHA256) ?? UNSIGNED_PAYLOAD;
  const payload = parsePayloadMode(payloadHash);
  if (payload === undefined) {
    throw new S3Error("AuthorizationQueryParametersError", `invalid ${Q_CONTENT_SHA256} "${payloadHash}"`);
  }

  const secret = lookup(lookupSecret, cred.accessKeyId);
  const now = nowMs(opts);
  if (requestMs - now > MAX_CLOCK_SKEW_MS) throw new S3Error("AccessDenied", "Request is not valid yet");
  if (now > requestMs + expires * 1000) throw new S3Error("AccessDenied", "Request has expired");

  const scope = `${cred.date}/${cred.region}/${cred.service}/${cred.terminator}`;
  const signingKey = deriveSigningKey(secret, cred.date, cred.region, cred.service);
  const ok = matchSignature(req, signedNames, signedHeaders, payloadHash, true, amzDate, scope, signingKey, signature);
  if (!ok) throw signatureMismatch();
  return { accessKeyId: cred.accessKeyId, payload, signingKey, seedSignature: signature, amzDate, scope };
}
