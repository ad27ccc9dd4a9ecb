// GetObject and HeadObject: conditional requests, single ranges, partNumber, response-*
// overrides, and the body streamed block by block with a small prefetch window.
//
// Memory (docs/memory.md): a streamed body's blocks live in a BudgetWindow of the node's budget
// (the share of its own requests). One slot (a block, stored form and plaintext) is waited for
// before the first block is read; read-ahead takes further slots only when they are free. Each
// block is lent to the response (util/buffer-pool), which gives its slot back once written out.
import type { ObjectMeta } from "../../model/object";
import { readObject } from "../../model/pending";
import { versionTags, visibleVersion, type VisibleVersion } from "../../model/object";
import type { VersionBlockEntry } from "../../model/version";
import type { ObjectRequest, S3Services } from "./context";
import { S3Error } from "./errors";
import { checksumHeaders, etagHeader, headerValueFromText, normalizeEtag } from "./headers";
import { parsePartNumber } from "./multipart";
import { parseSseC, sseCResponseHeaders, unlockSseC, type SseCKey } from "./sse-c";
import { NULL_VERSION_ID } from "./version-id";
import { decryptBlock, DecryptionError, type DataKey } from "../../block/encryption";
import { chunkDone, relend } from "../../util/buffer-pool";
import { BudgetWindow, type MemoryBudget } from "../../util/memory-budget";
import { bytesResponse } from "../http";
import { base64Bytes } from "../../db/entry-codec";

/** Blocks fetched ahead of the one being sent, when the budget has room for them. */
const PREFETCH_BLOCKS = 3;
/** Version block rows read per metadata query while streaming. */
const BLOCK_ROWS_PER_QUERY = 256;

const RESPONSE_OVERRIDES: Record<string, string> = {
  "response-content-type": "content-type",
  "response-content-language": "content-language",
  "response-expires": "expires",
  "response-cache-control": "cache-control",
  "response-content-disposition": "content-disposition",
  "response-content-encoding": "content-encoding",
};

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/** Parses a single-range header; undefined means "send everything" (absent or multi-range). */
export function parseRange(header: string | null, size: number): ByteRange | undefined {
  if (header === null) return undefined;
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header.trim());
  if (!m) return undefined; // multi-range or malformed: the whole object, as Garage and RFC 7233 allow
  const [, a, b] = m;
  if (a === "" && b === "") return undefined;
  let start: number;
  let end: number;
  if (a === "") {
    const suffix = Number(b);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== "" && Number(b) < start) return undefined;
  }
  if (start >= size) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): S3Error {
  return new S3Error("InvalidRange", "The requested range is not satisfiable", { "content-range": `bytes */${size}` });
}

export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** The four condition headers, by prefix ("" or x-amz-copy-source-): named once, not per request. */
const CONDITION_NAMES = new Map<string, readonly [string, string, string, string]>();

function conditionNames(prefix: string): readonly [string, string, string, string] {
  let names = CONDITION_NAMES.get(prefix);
  if (names === undefined) {
    names = [`${prefix}if-match`, `${prefix}if-unmodified-since`, `${prefix}if-none-match`, `${prefix}if-modified-since`];
    CONDITION_NAMES.set(prefix, names);
  }
  return names;
}

function etagListMatches(list: string, etag: string): boolean {
  return list.split(",").some((t) => t.trim() === "*" || normalizeEtag(t) === etag);
}

/** RFC 7232 §6 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since. */
export function checkConditions(h: Headers, etag: string, lastModified: number, prefix = "", notModifiedStatus: "304" | "412" = "304"): void {
  const [ifMatchName, ifUnmodifiedName, ifNoneMatchName, ifModifiedName] = conditionNames(prefix);
  const ifMatch = h.get(ifMatchName);
  const ifUnmodified = h.get(ifUnmodifiedName);
  const ifNoneMatch = h.get(ifNoneMatchName);
  const ifModified = h.get(ifModifiedName);
  if (ifMatch === null && ifUnmodified === null && ifNoneMatch === null && ifModified === null) return;
  const lastModifiedSec = Math.floor(lastModified / 1000);
  const failed = () => new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
  if (ifMatch !== null) {
    if (!etagListMatches(ifMatch, etag)) throw failed();
  } else if (ifUnmodified !== null) {
    const t = Date.parse(ifUnmodified);
    if (!Number.isNaN(t) && lastModifiedSec > Math.floor(t / 1000)) throw failed();
  }
  const notModified = () =>
    notModifiedStatus === "304" ? new S3Error("NotModified", "Not Modified", { etag: etagHeader(etag), "last-modified": httpDate(lastModified) }) : failed();
  if (ifNoneMatch !== null) {
    if (etagListMatches(ifNoneMatch, etag)) throw notModified();
  } else if (ifModified !== null) {
    const t = Date.parse(ifModified);
    if (!Number.isNaN(t) && lastModifiedSec <= Math.floor(t / 1000)) throw notModified();
  }
}

export function objectHeaders(meta: ObjectMeta, lastModified: number): Record<string, string> {
  const out: Record<string, string> = {
    "content-type": "binary/octet-stream",
    etag: etagHeader(meta.etag),
    "last-modified": httpDate(lastModified),
    "accept-ranges": "bytes",
  };
  for (const [name, value] of meta.headers) out[name] = name in out && name.startsWith("x-amz-meta-") ? `${out[name]},${value}` : value;
  return out;
}

/**
 * Streams plaintext bytes [start, end] of a version made of blocks. A failure (a block or the
 * block list out of reach) fails the stream: the caller decides what the client then sees.
 */
export function streamBlocks(services: S3Services, versionUuid: string, start: number, end: number, dataKey?: DataKey, budget: MemoryBudget = services.blocks.local): ReadableStream<Uint8Array> {
  const { model, blocks } = services;
  // Cancelling the body ends its waits: for memory, and for a slot its reader never gives back.
  const cancelled = new AbortController();
  async function* generate(): AsyncGenerator<Uint8Array> {
    // Waited for before anything is held: a GET never waits for memory while holding some.
    const win = await BudgetWindow.open(budget, blocks.readCover(), 1, 1 + PREFETCH_BLOCKS, cancelled.signal);
    const queue: { entry: VersionBlockEntry; data: Promise<Uint8Array>; at: number }[] = [];
    try {
      const pages = model.blockPages(versionUuid, BLOCK_ROWS_PER_QUERY);
      let rows: VersionBlockEntry[] = [];
      let past = false; // every needed row has been queued
      let pos = 0; // object offset of the next row
      let sent = 0;
      const peekRow = async (): Promise<VersionBlockEntry | undefined> => {
        while (rows.length === 0) {
          const page = await pages.next();
          if (page.done) return undefined;
          rows = page.value;
        }
        return rows[0];
      };
      /**
       * Starts reads of the next blocks while slots are free; with `wait` and nothing queued,
       * waits for a slot of this window (the client reading the block sent last gives it back).
       */
      const refill = async (wait: boolean) => {
        while (queue.length < 1 + PREFETCH_BLOCKS && !past) {
          const entry = await peekRow();
          if (!entry || pos > end) {
            past = true;
            return;
          }
          if (pos + entry.size > start) {
            if (queue.length === 0 && wait) await win.take(cancelled.signal);
            else if (!win.tryTake()) return;
            const data = blocks.getLent(entry.hash, win.slotBytes, () => win.give());
            data.catch(() => win.give()); // a failed read leaves its slot to the window; awaited below
            queue.push({ entry, data, at: pos });
          }
          rows.shift();
          pos += entry.size;
        }
      };
      for (;;) {
        await refill(true);
        const next = queue.shift();
        if (!next) break;
        const { entry, data, at } = next;
        const stored = await data;
        let bytes = stored;
        if (dataKey) {
          try {
            bytes = relend(stored, openSealedBytes(dataKey, stored, entry.size));
          } catch (err) {
            chunkDone(stored);
            throw err;
          }
        }
        if (bytes.length !== entry.size) {
          chunkDone(bytes);
          throw new Error(`block ${entry.hash} has ${bytes.length} bytes, expected ${entry.size}`);
        }
        const from = Math.max(0, start - at);
        const to = Math.min(entry.size, end + 1 - at);
        sent += to - from;
        await refill(false);
        yield bytes.subarray(from, to);
      }
      // Fewer block bytes than announced means missing metadata: fail so the client sees a
      // cut connection rather than a short body that looks complete.
      if (sent !== end - start + 1) throw new Error(`version ${versionUuid}: sent ${sent} of ${end - start + 1} bytes`);
    } finally {
      // Reads started and never sent give their slots back once they land.
      for (const q of queue.splice(0)) q.data.then(chunkDone, () => {});
      win.close();
    }
  }
  const it = generate();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const { value, done } = await it.next();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      async cancel() {
        cancelled.abort();
        await it.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The plaintext of a sealed (SSE-C) block or inline body. The sealed bytes may be a lent read
 * buffer: decrypting copies them out, so it is given back at once.
 */
export function openSealed(dataKey: DataKey, sealed: Uint8Array, plainSize: number): Uint8Array {
  try {
    return openSealedBytes(dataKey, sealed, plainSize);
  } finally {
    chunkDone(sealed);
  }
}

/** The plaintext of a sealed block, in memory of its own; `sealed` is left as it is. */
function openSealedBytes(dataKey: DataKey, sealed: Uint8Array, plainSize: number): Uint8Array {
  const { payload, compressed } = decryptBlock(dataKey, sealed);
  // Bunker seals plaintext only (body-writer); a compressed payload is not one it wrote.
  if (compressed || payload.length !== plainSize) throw new DecryptionError(`sealed block holds ${payload.length} bytes${compressed ? " (compressed)" : ""}, expected ${plainSize}`);
  return payload;
}

/**
 * Plaintext bytes [start, end] of a visible version, inline or in blocks, opened with
 * `dataKey` when it is sealed: what CopyObject and UploadPartCopy read when they must rewrite
 * the data (a range, another key). The read-ahead window comes from the budget's share for copy
 * sources (block/manager.ts): the copy's writer already holds a window of the node's own
 * requests' share, and waiting there for another while holding one could wait forever.
 */
export function readPlain(services: S3Services, version: VisibleVersion, dataKey: DataKey | undefined, start: number, end: number): AsyncIterable<Uint8Array> {
  const data = version.state.data;
  if (end < start) return (async function* () {})();
  if (data.kind === "inline") {
    const stored = base64Bytes(data, "base64");
    const plain = dataKey ? openSealed(dataKey, stored, data.meta.size) : stored;
    return (async function* () {
      // A copy: the entry's bytes (base64Bytes) stay the entry's, whatever the consumer frees
      // once written (body-writer hands whole buffers back to the allocator).
      yield plain.slice(start, end + 1);
    })();
  }
  return streamBlocks(services, version.uuid, start, end, dataKey, services.blocks.copySources);
}

export async function getObject(r: ObjectRequest, isHead: boolean): Promise<Response> {
  // The key is checked before anything about the object is said, even whether it exists.
  const given = parseSseC(r.headers);
  const entry = await readObject(r.services, r.bucket.id, r.key);
  const version = visibleVersion(entry);
  // A deleted key of an unversioned bucket: S3 says the current version is no delete marker.
  if (!version) throw new S3Error("NoSuchKey", "The specified key does not exist.", entry ? { "x-amz-delete-marker": "false" } : {});
  const response = await objectResponse(r.services, version, { headers: r.headers, query: r.query }, isHead, given);
  if (given) for (const [name, value] of Object.entries(sseCResponseHeaders(given.keyMd5))) response.headers.set(name, value);
  // The version asked for by id (`null`, the only one) is named back, as S3 does.
  if (r.query.has("versionId")) response.headers.set("x-amz-version-id", NULL_VERSION_ID);
  // S3 API only (not the website endpoint), and only when there are tags, as S3.
  const tagCount = versionTags(version).length;
  if (tagCount > 0) response.headers.set("x-amz-tagging-count", String(tagCount));
  return response;
}

/**
 * The stored checksum of what a GET or HEAD answers, for x-amz-checksum-mode: ENABLED: the
 * object's (the composite "-N" or the full-object CRC of a multipart object), or with
 * partNumber=N that part's. A Range has none (as AWS: S3 keeps no checksum of any range).
 */
function checksumOfResponse(meta: ObjectMeta, partNumber: number | undefined, range: ByteRange | undefined): ObjectMeta["checksum"] {
  const checksum = meta.checksum;
  if (!checksum) return undefined;
  if (partNumber === undefined) return range ? undefined : checksum;
  // A single-part object's part 1 is the whole object.
  if (meta.parts === undefined) return partNumber === 1 ? checksum : undefined;
  const value = meta.partChecksums?.[partNumber - 1];
  return value === undefined ? undefined : { algorithm: checksum.algorithm, value, type: checksum.type };
}

/** What of the request shapes an object response: conditions, Range, partNumber, response-*. */
export interface ObjectRequestShape {
  headers: Headers;
  query: URLSearchParams;
}

/** The response to GET or HEAD of a visible version (the S3 and web endpoints share it). */
export async function objectResponse(services: S3Services, version: VisibleVersion, r: ObjectRequestShape, isHead: boolean, key?: SseCKey): Promise<Response> {
  const data = version.state.data;
  const meta = data.meta;
  checkConditions(r.headers, meta.etag, version.timestamp);

  const headers = objectHeaders(meta, version.timestamp);
  let range: ByteRange | undefined;
  const partNumberRaw = r.query.get("partNumber");
  let partNumber: number | undefined;
  if (partNumberRaw !== null) {
    partNumber = parsePartNumber(partNumberRaw);
    const parts = meta.parts ?? [meta.size];
    if (r.headers.has("range")) throw new S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter");
    if (partNumber > parts.length) throw new S3Error("InvalidPart", "The requested partnumber is not satisfiable");
    const start = parts.slice(0, partNumber - 1).reduce((a, b) => a + b, 0);
    range = { start, end: start + parts[partNumber - 1]! - 1 };
    headers["x-amz-mp-parts-count"] = String(parts.length);
    if (parts[partNumber - 1] === 0) range = undefined;
  } else {
    range = parseRange(r.headers.get("range"), meta.size);
  }
  // After the part and range checks, as AWS orders its answers (s3-tests test_multipart_sse_c_get_part).
  const dataKey = unlockSseC(meta.encryption, key, "read");
  if (r.query.size > 0) {
    for (const [param, header] of Object.entries(RESPONSE_OVERRIDES)) {
      const v = r.query.get(param);
      if (v !== null) headers[header] = headerValueFromText(param, v);
    }
  }
  if (r.headers.get("x-amz-checksum-mode")?.toUpperCase() === "ENABLED") {
    const checksum = checksumOfResponse(meta, partNumber, range);
    if (checksum) Object.assign(headers, checksumHeaders(checksum));
  }

  const status = range && (partNumberRaw === null || range.end - range.start + 1 !== meta.size) ? 206 : 200;
  const start = range?.start ?? 0;
  const end = range?.end ?? meta.size - 1;
  headers["content-length"] = String(meta.size === 0 ? 0 : end - start + 1);
  if (range) headers["content-range"] = `bytes ${start}-${end}/${meta.size}`;
  if (isHead || meta.size === 0) return new Response(null, { status, headers });
  const open = (stored: Uint8Array, plainSize: number) => (dataKey ? openSealed(dataKey, stored, plainSize) : stored);
  if (data.kind === "inline") {
    // The row's own bytes, or the plaintext opened from them: no pool's loan.
    return bytesResponse(open(base64Bytes(data, "base64"), meta.size).subarray(start, end + 1), { status, headers }, { lent: false });
  }
  if (data.singleBlock !== undefined) {
    const bytes = open(await services.blocks.get(data.singleBlock), meta.size);
    return bytesResponse(bytes.subarray(start, end + 1), { status, headers });
  }
  if (meta.size <= services.settings.blockSize) {
    // One block: answer with its bytes directly, without the streaming machinery.
    const rows = await services.model.versionBlocks.range(version.uuid, { limit: 2 });
    if (rows.length === 1 && rows[0]!.size === meta.size) {
      const bytes = open(await services.blocks.get(rows[0]!.hash), meta.size);
      return new Response(bytes.subarray(start, end + 1), { status, headers });
    }
  }
  return new Response(await withFirstChunkRead(streamBlocks(services, version.uuid, start, end, dataKey)), { status, headers });
}

/**
 * Reads the first chunk of a body before the response exists, so that a failure to reach the
 * version's block list or first block is an S3 error (503/500 with its XML) rather than a
 * committed 200 with nothing after it. Later failures cut the connection short of the
 * Content-Length, which every client sees as a truncated transfer.
 */
export async function withFirstChunkRead(body: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  const reader = body.getReader();
  const first = await reader.read();
  let head = first.done ? undefined : first.value;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (head !== undefined) {
          controller.enqueue(head);
          head = undefined;
          return;
        }
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
