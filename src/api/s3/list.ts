// ListObjects (v1) and ListObjectsV2. Keys are walked in sort order straight from the
// object table; each common prefix is skipped with one seek past it, so a page costs the
// same at the end of a 100 000-key bucket as at its start.
import { MAX_LIST_KEYS } from "../../util/limits";
import { parseDecimal } from "../../util/decimal";
import { visibleVersion, type ObjectEntry } from "../../model/object";
import { isUnconfirmed, resolvePending } from "../../model/pending";
import type { Table } from "../../table/table";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { isoDate, xmlResponse } from "./bucket";
import { xmlDocument } from "./xml";
import { etagHeader } from "./headers";
import { NULL_VERSION_ID } from "./version-id";

/** Rows fetched per table query while filling a page. */
const SCAN_BATCH = 256;
/**
 * Keys with a pending version (model/pending.ts) one listing page resolves: each costs a
 * presence check to the block's nodes, made in parallel with the rest of its batch.
 */
const LIST_PENDING_RESOLUTIONS_MAX = 64;
/** S3's integer query parameters are 32-bit signed: AWS refuses anything larger. */
const MAX_QUERY_INTEGER = 2 ** 31 - 1;

/**
 * An integer query parameter (max-keys, max-parts, ...), undefined when absent. Plain decimal
 * in [0, 2^31-1], or InvalidArgument, as AWS answers.
 */
export function queryInteger(q: URLSearchParams, name: string): number | undefined {
  const raw = q.get(name);
  if (raw === null) return undefined;
  const n = parseDecimal(raw, 0, MAX_QUERY_INTEGER);
  if (n === undefined) throw new S3Error("InvalidArgument", `${name} must be an integer between 0 and ${MAX_QUERY_INTEGER}, got ${JSON.stringify(raw)}`);
  return n;
}

/** The smallest string greater than every string starting with `prefix` (code point order). */
export function prefixEnd(prefix: string): string | undefined {
  const cps = [...prefix];
  while (cps.length > 0) {
    const last = cps.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return cps.join("") + String.fromCodePoint(next);
    }
  }
  return undefined;
}

export interface ListItem {
  key: string;
  entry: ObjectEntry;
}

export interface ListPage {
  items: ListItem[];
  commonPrefixes: string[];
  isTruncated: boolean;
  /** Last key or common prefix returned: where the next page continues from. */
  last?: string;
}

export interface ListParams {
  prefix: string;
  delimiter?: string;
  /** List keys strictly after this one. */
  after?: string;
  maxKeys: number;
}

/** Walks a partition of a table in key order with prefix/delimiter folding. */
export async function walkKeys<E>(
  table: Table<E>,
  pk: string,
  keyOf: (e: E) => string,
  visible: (e: E) => boolean,
  p: ListParams,
  /** What each batch of rows shows, when that takes more than the rows (pending versions). */
  resolve: (rows: E[]) => Promise<E[]> = async (rows) => rows,
): Promise<{ items: E[]; commonPrefixes: string[]; isTruncated: boolean; last?: string }> {
  const items: E[] = [];
  const commonPrefixes: string[] = [];
  const end = p.prefix === "" ? undefined : prefixEnd(p.prefix);
  let cursor = p.prefix;
  if (p.after !== undefined && p.after + "\u0000" > cursor) cursor = p.after + "\u0000";
  if (p.after !== undefined && p.delimiter) {
    // Continuing after a common prefix (or a key inside one): that prefix was already
    // returned, so nothing under it may be listed again.
    const idx = p.after.indexOf(p.delimiter, p.prefix.length);
    if (idx >= 0 && p.after.startsWith(p.prefix)) {
      const skip = prefixEnd(p.after.slice(0, idx + p.delimiter.length));
      if (skip === undefined) return { items, commonPrefixes, isTruncated: false };
      if (skip > cursor) cursor = skip;
    }
  }
  let count = 0;
  let last: string | undefined;
  // max-keys=0 asks for no keys: an empty, complete answer (a truncated one has no token).
  if (p.maxKeys === 0) return { items, commonPrefixes, isTruncated: false };
  for (;;) {
    const fetched = await table.range(pk, { start: cursor, end, limit: SCAN_BATCH });
    const rows = await resolve(fetched);
    let seeked = false;
    for (const e of rows) {
      const key = keyOf(e);
      cursor = key + "\u0000";
      if (!visible(e)) continue;
      if (p.delimiter) {
        const idx = key.indexOf(p.delimiter, p.prefix.length);
        if (idx >= 0) {
          const cp = key.slice(0, idx + p.delimiter.length);
          if (count === p.maxKeys) return { items, commonPrefixes, isTruncated: true, last };
          commonPrefixes.push(cp);
          count++;
          last = cp;
          const skip = prefixEnd(cp);
          if (skip === undefined) return { items, commonPrefixes, isTruncated: false, last };
          cursor = skip;
          seeked = true;
          break;
        }
      }
      if (count === p.maxKeys) return { items, commonPrefixes, isTruncated: true, last };
      items.push(e);
      count++;
      last = key;
    }
    if (!seeked && fetched.length < SCAN_BATCH) return { items, commonPrefixes, isTruncated: false, last };
  }
}

function listParams(r: BucketRequest, after: string | undefined): ListParams & { encodeUrl: boolean } {
  const q = r.query;
  // More than a page holds is clamped, as AWS does.
  const maxKeys = queryInteger(q, "max-keys") ?? MAX_LIST_KEYS;
  const encoding = q.get("encoding-type");
  if (encoding !== null && encoding !== "url") throw new S3Error("InvalidArgument", "Invalid Encoding Method specified in Request");
  const delimiter = q.get("delimiter") || undefined;
  return { prefix: q.get("prefix") ?? "", delimiter, after, maxKeys: Math.min(maxKeys, MAX_LIST_KEYS), encodeUrl: encoding === "url" };
}

/**
 * S3's encoding-type=url: percent-encode the UTF-8 bytes, keeping "/" readable. A lone
 * surrogate (no UTF-8 form) becomes U+FFFD, as in the XML writer, rather than a URIError.
 */
export function urlEncodeKey(s: string): string {
  return encodeURIComponent(s.toWellFormed()).replaceAll("%2F", "/");
}

/**
 * Text that every URL decoder gives back unchanged (no "%", no "+") and that XML 1.0 carries
 * (no C0 control but TAB, LF and CR, no U+FFFE/U+FFFF, no lone surrogate).
 */
const DECODES_TO_ITSELF = /^[^%+\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF\uD800-\uDFFF]*$/u;

/**
 * ListObjects (v1)'s own Prefix element under encoding-type=url. SDKs that ask for the
 * encoding themselves disagree on it: the Java (v1) and PHP SDKs URL-decode it, botocore
 * returns it as it came (so s3-tests' test_bucket_list_prefix_unreadable expects the raw
 * prefix back). It is sent raw when raw and encoded decode alike, so each reads back the
 * prefix it sent; encoded otherwise, as AWS documents it.
 */
export function v1PrefixElement(prefix: string): string {
  return DECODES_TO_ITSELF.test(prefix) ? prefix : urlEncodeKey(prefix);
}

async function listPage(r: BucketRequest, p: ListParams): Promise<ListPage> {
  // A key just written holds a pending version until its completion lands: it is resolved as
  // a GET would (one presence check, all of a batch's at once), so a listing right after a PUT
  // shows it. Past the bound, a key shows its last complete version (as S3 lists may lag).
  let resolutionsLeft = LIST_PENDING_RESOLUTIONS_MAX;
  const resolve = (rows: ObjectEntry[]) =>
    Promise.all(
      rows.map((o) => {
        if (resolutionsLeft === 0 || !o.versions.some(isUnconfirmed)) return o;
        resolutionsLeft--;
        return resolvePending(r.services, o).then((e) => e ?? o);
      }),
    );
  const page = await walkKeys(r.services.model.objects, r.bucket.id, (o) => o.key, (o) => visibleVersion(o) !== undefined, p, resolve);
  return { ...page, items: page.items.map((entry) => ({ key: entry.key, entry })) };
}

function contents(r: BucketRequest, items: ListItem[], enc: (s: string) => string, withOwner: boolean) {
  return items.map(({ key, entry }) => {
    const v = visibleVersion(entry)!;
    return {
      Key: enc(key),
      LastModified: isoDate(v.timestamp),
      ETag: etagHeader(v.state.data.meta.etag),
      Size: v.state.data.meta.size,
      ...(withOwner ? { Owner: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v } } : {}),
      StorageClass: "STANDARD",
    };
  });
}

export async function listObjectsV1(r: BucketRequest): Promise<Response> {
  const marker = r.query.get("marker") ?? "";
  const p = listParams(r, marker === "" ? undefined : marker);
  const page = await listPage(r, p);
  const enc = p.encodeUrl ? urlEncodeKey : (s: string) => s;
  return xmlResponse(
    xmlDocument("ListBucketResult", {
      Name: r.bucketName,
      Prefix: p.encodeUrl ? v1PrefixElement(p.prefix) : p.prefix,
      Marker: enc(marker),
      NextMarker: page.isTruncated && page.last !== undefined ? enc(page.last) : undefined,
      MaxKeys: p.maxKeys,
      Delimiter: p.delimiter !== undefined ? enc(p.delimiter) : undefined,
      EncodingType: p.encodeUrl ? "url" : undefined,
      IsTruncated: page.isTruncated,
      Contents: contents(r, page.items, enc, true),
      CommonPrefixes: page.commonPrefixes.map((cp) => ({ Prefix: enc(cp) })),
    }),
  );
}

export function encodeContinuationToken(key: string): string {
  return Buffer.from(key, "utf8").toString("base64url");
}

export function decodeContinuationToken(token: string): string {
  const key = Buffer.from(token, "base64url").toString("utf8");
  if (encodeContinuationToken(key) !== token) throw new S3Error("InvalidArgument", "The continuation token provided is incorrect");
  return key;
}

export async function listObjectsV2(r: BucketRequest): Promise<Response> {
  const token = r.query.get("continuation-token");
  const startAfter = r.query.get("start-after") ?? undefined;
  let after = startAfter;
  if (token !== null) {
    const fromToken = decodeContinuationToken(token);
    if (after === undefined || fromToken > after) after = fromToken;
  }
  const p = listParams(r, after);
  const page = await listPage(r, p);
  const enc = p.encodeUrl ? urlEncodeKey : (s: string) => s;
  return xmlResponse(
    xmlDocument("ListBucketResult", {
      Name: r.bucketName,
      Prefix: enc(p.prefix),
      StartAfter: startAfter !== undefined ? enc(startAfter) : undefined,
      ContinuationToken: token ?? undefined,
      NextContinuationToken: page.isTruncated && page.last !== undefined ? encodeContinuationToken(page.last) : undefined,
      KeyCount: page.items.length + page.commonPrefixes.length,
      MaxKeys: p.maxKeys,
      Delimiter: p.delimiter !== undefined ? enc(p.delimiter) : undefined,
      EncodingType: p.encodeUrl ? "url" : undefined,
      IsTruncated: page.isTruncated,
      Contents: contents(r, page.items, enc, r.query.get("fetch-owner") === "true"),
      CommonPrefixes: page.commonPrefixes.map((cp) => ({ Prefix: enc(cp) })),
    }),
  );
}

/**
 * ListObjectVersions. Buckets are never versioned: every object has one version, `null`, which is
 * the latest, and a deleted key has none (no delete markers are kept). Answered as AWS answers
 * for a bucket whose versioning was never enabled; tools that list versions (cleanups, backup
 * tools, s3-tests) work unchanged.
 */
export async function listObjectVersions(r: BucketRequest): Promise<Response> {
  const keyMarker = r.query.get("key-marker") ?? "";
  const versionIdMarker = r.query.get("version-id-marker") ?? "";
  if (versionIdMarker !== "" && keyMarker === "") throw new S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.");
  if (versionIdMarker !== "" && versionIdMarker !== "null") throw new S3Error("InvalidArgument", "Invalid version id specified");
  // Each key has one version: after (key, any version) is after the key.
  const p = listParams(r, keyMarker === "" ? undefined : keyMarker);
  const page = await listPage(r, p);
  const enc = p.encodeUrl ? urlEncodeKey : (s: string) => s;
  const truncatedAfter = page.isTruncated && page.last !== undefined ? page.last : undefined;
  return xmlResponse(
    xmlDocument("ListVersionsResult", {
      Name: r.bucketName,
      Prefix: enc(p.prefix),
      KeyMarker: enc(keyMarker),
      VersionIdMarker: versionIdMarker,
      NextKeyMarker: truncatedAfter !== undefined ? enc(truncatedAfter) : undefined,
      NextVersionIdMarker: truncatedAfter !== undefined ? NULL_VERSION_ID : undefined,
      MaxKeys: p.maxKeys,
      Delimiter: p.delimiter !== undefined ? enc(p.delimiter) : undefined,
      EncodingType: p.encodeUrl ? "url" : undefined,
      IsTruncated: page.isTruncated,
      Version: contents(r, page.items, enc, true).map(({ Key, ...rest }) => ({ Key, VersionId: NULL_VERSION_ID, IsLatest: true, ...rest })),
      CommonPrefixes: page.commonPrefixes.map((cp) => ({ Prefix: enc(cp) })),
    }),
  );
}
