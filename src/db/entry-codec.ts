// How a table entry is stored in its row: a compact binary form of the entry's JSON value,
// exact to JSON (decode(encode(x)) is JSON.parse(JSON.stringify(x)), key order included), and
// deterministic (one value, one encoding), so that replicas holding the same entry store the
// same bytes and anti-entropy can compare them.
// It lives in the db layer because the migration from JSON rows (db/migrations.ts) uses it.
//
// A row is FORMAT_VERSION, then one value. A value is a tag byte and what the tag says:
//   0x00 null, 0x01 false, 0x02 true
//   0x03 unsigned integer (varint), 0x04 negative integer (varint of its magnitude),
//   0x05 any other number (float64, little-endian)
//   0x06 UTF-8 string, 0x07 lowercase-hex string as its bytes, 0x08 base64 string as its bytes,
//   0x0b a string that is not well-formed UTF-16 (lone surrogates) as its code units:
//        each a varint length, then the bytes
//   0x09 array: varint count, values
//   0x0a object: varint count, then key (a string value) and value, in the object's key order
//   0x40-0x7f the integers 0-63
//   0x80-0xff the strings of DICTIONARY (keys and enum values that recur in every entry)
// Ids, hashes and etags (64 or 32 hex digits) take half their text; an inline body (base64)
// three quarters, with no JSON escaping around it.
import { assert } from "../util/assert";

/** First byte of every encoded row: the row format. A new format is a new version and a migration. */
export const FORMAT_VERSION = 1;

const T_NULL = 0x00;
const T_FALSE = 0x01;
const T_TRUE = 0x02;
const T_UINT = 0x03;
const T_NEGINT = 0x04;
const T_FLOAT = 0x05;
const T_UTF8 = 0x06;
const T_HEX = 0x07;
const T_BASE64 = 0x08;
const T_ARRAY = 0x09;
const T_OBJECT = 0x0a;
const T_UTF16 = 0x0b;
const T_SMALL_INT = 0x40;
const SMALL_INT_MAX = 0x3f;
const T_DICT = 0x80;

/**
 * Strings that recur in entries, one byte each. Part of the row format: changing this list
 * changes stored bytes (and anti-entropy digests), so it needs a new FORMAT_VERSION.
 */
const DICTIONARY: readonly string[] = [
  // object entries
  "bucketId", "key", "versions", "uuid", "timestamp", "state", "kind", "data", "meta", "size",
  "etag", "headers", "checksum", "algorithm", "value", "type", "encryption", "alg", "salt",
  "keyMac", "parts", "partChecksums", "base64", "singleBlock", "tags", "set", "multipart",
  "checksumAlgorithm", "uploader", "ballot", "ts", "node",
  "complete", "inline", "blocks", "deleteMarker", "uploading", "pending", "proposed", "aborted",
  "content-type", "application/octet-stream", "binary/octet-stream", "text/plain",
  "FULL_OBJECT", "COMPOSITE", "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256",
  // versions, blocks, block references
  "deleted", "backlink", "object", "upload", "uploadId", "part", "offset", "hash", "version",
  // multipart uploads and parts
  "outcome", "checksumType", "completed",
  // buckets, aliases, keys, counters
  "id", "created", "keys", "read", "write", "owner", "website", "cors", "quotas", "lifecycle",
  "name", "secret", "allowCreateBucket", "nodes", "objects", "bytes", "uploads", "v",
];
const DICT_INDEX = new Map(DICTIONARY.map((s, i) => [s, i]));
const DICT_MAX_LENGTH = Math.max(...DICTIONARY.map((s) => s.length));
assert(DICTIONARY.length <= 0x80 && DICT_INDEX.size === DICTIONARY.length, "the dictionary fits its tag range, each string once");

const HEX_RE = /^[0-9a-f]+$/;
const BASE64_RE = /^[A-Za-z0-9+/]+={0,2}$/;
/** Shorter base64-looking strings are left as text: too little to gain for the check. */
const BASE64_MIN_LENGTH = 12;
/**
 * Longer strings go straight to the strict decoder, which refuses what is not base64 (a
 * pattern test costs more than the decoding on a 1 KiB body); shorter ones, often keys or
 * names that are not base64, are tested first, as a refusal (an exception) costs more.
 */
const BASE64_TRY_LENGTH = 64;

/**
 * Base64 strings of at least this many bytes (inline bodies) are decoded into their text only
 * when read: HEAD, a DELETE merging the version away and most reads of an entry never look at
 * the body, and its text (4/3 of it) was the largest allocation of a small object's HEAD. The
 * property is an accessor until first read (or written), then an ordinary one: JSON, spreads
 * and key order see a plain string property. The accessor keeps a copy of the bytes, as the
 * row's buffer may be handed back once decoded (table-rows.ts releaseRow), or, when the caller
 * says the row is kept (`rowKept`: a point read, whose row lives as long as its entry), a view
 * of the row: no copy. A view whose row was handed back all the same is a bug, refused loudly
 * (lazyBodyBytes), never read as an empty body.
 */
const LAZY_BASE64_MIN_BYTES = 1024;

/** The bytes behind each lazy base64 property, by its getter (see base64Bytes). */
const lazyBytes = new WeakMap<() => string, Uint8Array>();

/**
 * The bytes a base64 string property of a decoded entry stands for (an inline body): the row's
 * own bytes while its text has not been made, without making it; else the text decoded.
 */
export function base64Bytes(holder: object, key: string): Uint8Array {
  const get = Object.getOwnPropertyDescriptor(holder, key)?.get;
  const bytes = get === undefined ? undefined : lazyBytes.get(get as () => string);
  return bytes === undefined ? Buffer.from((holder as Record<string, string>)[key]!, "base64") : lazyBodyBytes(bytes);
}

/** The bytes behind a lazy property, asserted still there (see LAZY_BASE64_MIN_BYTES). */
function lazyBodyBytes(bytes: Uint8Array): Uint8Array {
  if ((bytes.buffer as ArrayBuffer).detached) throw new Error("an inline body was read after its row was handed back (releaseRow of a row decoded with rowKept)");
  return bytes;
}

const utf8 = new TextEncoder();

/** TC39's Uint8Array.prototype.setFromBase64, whose options Bun's bundled types leave out. */
type SetFromBase64 = (this: Uint8Array, base64: string, options: { lastChunkHandling: "strict" }) => { read: number; written: number };
const setFromBase64 = Uint8Array.prototype.setFromBase64 as unknown as SetFromBase64;
const STRICT = { lastChunkHandling: "strict" } as const;
/** TC39's Uint8Array.fromHex (in Bun, missing from its bundled types). */
const fromHex = (Uint8Array as unknown as { fromHex(hex: string): Uint8Array }).fromHex;

/** A malformed row: a stored value this codec cannot read (corruption, or a newer format). */
export class RowFormatError extends Error {}

class Writer {
  buf = new Uint8Array(256);
  view = new DataView(this.buf.buffer);
  pos = 0;

  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }

  /** Unsigned integer up to 2^53, 7 bits a byte (arithmetic, not bit operations: above 2^31). */
  varint(n: number): void {
    this.reserve(8);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  float(x: number): void {
    this.reserve(8);
    this.view.setFloat64(this.pos, x, true);
    this.pos += 8;
  }

  string(s: string): void {
    const len = s.length;
    // (The length test spares hashing long strings, an inline body above all.)
    const d = len <= DICT_MAX_LENGTH ? DICT_INDEX.get(s) : undefined;
    if (d !== undefined) return this.byte(T_DICT + d);
    if (len >= 2 && len % 2 === 0 && this.hex(s)) return;
    if (len >= BASE64_MIN_LENGTH && len % 4 === 0 && (len > BASE64_TRY_LENGTH || BASE64_RE.test(s)) && this.base64(s)) return;
    if (len < 0x80 && this.ascii(s)) return;
    if (!s.isWellFormed()) {
      this.byte(T_UTF16);
      this.varint(len);
      this.reserve(len * 2);
      for (let i = 0; i < len; i++) {
        this.view.setUint16(this.pos, s.charCodeAt(i), true);
        this.pos += 2;
      }
      return;
    }
    this.byte(T_UTF8);
    this.varint(Buffer.byteLength(s, "utf8"));
    this.reserve(len * 3);
    this.pos += utf8.encodeInto(s, this.buf.subarray(this.pos)).written;
  }

  /** Lowercase hex as its bytes; false (nothing written) for any other text. */
  private hex(s: string): boolean {
    if (!HEX_RE.test(s)) return false;
    this.byte(T_HEX);
    this.varint(s.length / 2);
    this.reserve(s.length / 2);
    this.buf.set(fromHex(s), this.pos);
    this.pos += s.length / 2;
    return true;
  }

  /**
   * Canonical base64 as its bytes; false (nothing written) for any other text. Strict: only the
   * base64 alphabet (no "-_"), padding and unused bits as the encoder writes them, and every
   * character a digit (whitespace, which the decoder skips, would leave fewer bytes than the
   * length promises): the bytes encode back to this very text.
   */
  private base64(s: string): boolean {
    const start = this.pos;
    const n = (s.length / 4) * 3 - (s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0);
    this.byte(T_BASE64);
    this.varint(n);
    this.reserve(n);
    try {
      const { read, written } = setFromBase64.call(this.buf.subarray(this.pos, this.pos + n), s, STRICT);
      if (read === s.length && written === n) {
        this.pos += n;
        return true;
      }
    } catch {
      // not canonical base64
    }
    this.pos = start;
    return false;
  }

  /** A short ASCII string as UTF-8 (its char codes); false (nothing written) otherwise. */
  private ascii(s: string): boolean {
    const start = this.pos;
    this.reserve(s.length + 2);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = T_UTF8;
    buf[p++] = s.length;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.pos = start;
        return false;
      }
      buf[p++] = c;
    }
    this.pos = p;
    return true;
  }

  value(x: unknown, inArray: boolean): boolean {
    switch (typeof x) {
      case "string":
        this.string(x);
        return true;
      case "number":
        if (!Number.isFinite(x)) this.byte(T_NULL); // as JSON.stringify writes them
        else if (Number.isSafeInteger(x)) {
          if (x >= 0 && x <= SMALL_INT_MAX) this.byte(T_SMALL_INT + x);
          else if (x >= 0) {
            this.byte(T_UINT);
            this.varint(x);
          } else {
            this.byte(T_NEGINT);
            this.varint(-x);
          }
        } else {
          this.byte(T_FLOAT);
          this.float(x);
        }
        return true;
      case "boolean":
        this.byte(x ? T_TRUE : T_FALSE);
        return true;
      case "object":
        if (x === null) this.byte(T_NULL);
        else if (Array.isArray(x)) {
          this.byte(T_ARRAY);
          this.varint(x.length);
          for (const item of x) this.value(item, true);
        } else if (typeof (x as { toJSON?: unknown }).toJSON === "function") {
          return this.value((x as { toJSON(): unknown }).toJSON(), inArray);
        } else {
          const o = x as Record<string, unknown>;
          const keys = Object.keys(o);
          let n = 0;
          for (const k of keys) if (storable(o[k])) n++;
          this.byte(T_OBJECT);
          this.varint(n);
          for (const k of keys) {
            const v = o[k];
            if (!storable(v)) continue;
            this.string(k);
            this.value(v, false);
          }
        }
        return true;
      case "bigint":
        throw new TypeError("an entry cannot hold a bigint (JSON cannot)");
      default:
        // undefined, functions, symbols: JSON leaves them out of objects and writes null in arrays.
        if (inArray) this.byte(T_NULL);
        return inArray;
    }
  }
}

function storable(v: unknown): boolean {
  return v !== undefined && typeof v !== "function" && typeof v !== "symbol";
}

/** One reusable writer: encoding is synchronous, so no two calls overlap. */
const writer = new Writer();

/** The stored form of an entry. */
export function encodeEntry(entry: unknown): Uint8Array {
  const w = writer;
  w.pos = 0;
  w.byte(FORMAT_VERSION);
  if (!w.value(entry, false)) throw new TypeError("an entry must be a JSON value");
  const out = w.buf.slice(0, w.pos);
  // Do not keep a buffer grown by one huge entry.
  if (w.buf.length > 1 << 20) {
    w.buf = new Uint8Array(256);
    w.view = new DataView(w.buf.buffer);
  }
  return out;
}

class Reader {
  pos = 1;
  /** The same bytes as a Buffer: its toString slices text out without a copy first. */
  private readonly buf: Buffer;
  private dataView: DataView | undefined;
  constructor(
    row: Uint8Array,
    /** The row lives as long as the entry (never handed back): lazy bodies are views of it. */
    private readonly rowKept: boolean,
  ) {
    this.buf = Buffer.from(row.buffer, row.byteOffset, row.byteLength);
  }

  /** Made when first needed (floats, UTF-16 text): most rows have neither. */
  private get view(): DataView {
    return (this.dataView ??= new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength));
  }

  fail(what: string): never {
    throw new RowFormatError(`malformed row at byte ${this.pos}: ${what}`);
  }

  byte(): number {
    if (this.pos >= this.buf.length) this.fail("truncated");
    return this.buf[this.pos++]!;
  }

  varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 0x80;
    }
    return this.fail("varint too long");
  }

  /** Skips n bytes; returns where they start. */
  skip(n: number): number {
    const start = this.pos;
    if (start + n > this.buf.length) this.fail("truncated");
    this.pos += n;
    return start;
  }

  text(encoding: "utf8" | "hex" | "base64"): string {
    const n = this.varint();
    const start = this.skip(n);
    return this.buf.toString(encoding, start, start + n);
  }

  /**
   * At a base64 string of at least LAZY_BASE64_MIN_BYTES (an inline body): makes it property
   * `k` of `out`, its text made on first read (see LAZY_BASE64_MIN_BYTES), and returns true.
   * Shorter: reads nothing and returns false.
   */
  lazyBase64(out: Record<string, unknown>, k: string): boolean {
    const at = this.pos;
    this.pos++; // the tag
    const n = this.varint();
    if (n < LAZY_BASE64_MIN_BYTES) {
      this.pos = at;
      return false;
    }
    const start = this.skip(n);
    // A copy unless the row is kept: its buffer may be handed back to the allocator once
    // decoded (table-rows.ts releaseRow), and a copy of n bytes is still cheaper than its 4n/3 of text.
    const bytes = this.rowKept ? new Uint8Array(this.buf.buffer, this.buf.byteOffset + start, n) : Uint8Array.prototype.slice.call(this.buf, start, start + n);
    const settle = (value: unknown) => Object.defineProperty(out, k, { value, writable: true, enumerable: true, configurable: true });
    const get = () => {
      const text = Buffer.from(lazyBodyBytes(bytes).buffer, bytes.byteOffset, n).toString("base64");
      settle(text);
      return text;
    };
    lazyBytes.set(get, bytes);
    Object.defineProperty(out, k, { get, set: settle, enumerable: true, configurable: true });
    return true;
  }

  value(): unknown {
    const tag = this.byte();
    if (tag >= T_DICT) return DICTIONARY[tag - T_DICT] ?? this.fail(`unknown dictionary string ${tag - T_DICT}`);
    if (tag >= T_SMALL_INT) return tag - T_SMALL_INT;
    switch (tag) {
      case T_NULL:
        return null;
      case T_FALSE:
        return false;
      case T_TRUE:
        return true;
      case T_UINT:
        return this.varint();
      case T_NEGINT:
        return -this.varint();
      case T_FLOAT: {
        if (this.pos + 8 > this.buf.length) this.fail("truncated");
        const x = this.view.getFloat64(this.pos, true);
        this.pos += 8;
        return x;
      }
      case T_UTF8:
        return this.text("utf8");
      case T_HEX:
        return this.text("hex");
      case T_BASE64:
        return this.text("base64");
      case T_UTF16: {
        const n = this.varint();
        const start = this.skip(n * 2);
        let s = "";
        for (let i = 0; i < n; i++) s += String.fromCharCode(this.view.getUint16(start + 2 * i, true));
        return s;
      }
      case T_ARRAY: {
        const n = this.varint();
        if (n > this.buf.length - this.pos) this.fail("array longer than the row");
        const out = new Array<unknown>(n);
        for (let i = 0; i < n; i++) out[i] = this.value();
        return out;
      }
      case T_OBJECT: {
        const n = this.varint();
        if (n > this.buf.length - this.pos) this.fail("object longer than the row");
        const out: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const k = this.value();
          if (typeof k !== "string") this.fail("object key is not a string");
          if (this.buf[this.pos] === T_BASE64 && k !== "__proto__" && this.lazyBase64(out, k)) continue;
          const v = this.value();
          // As JSON.parse: "__proto__" is an ordinary own property, never the prototype.
          if (k === "__proto__") Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
          else out[k] = v;
        }
        return out;
      }
      default:
        return this.fail(`unknown tag 0x${tag.toString(16)}`);
    }
  }
}

/**
 * The entry stored as `row`. Throws RowFormatError on bytes that are not a row of this format.
 * `rowKept`: the caller never hands `row` back (releaseRow), so inline bodies may stay views
 * of it instead of copies.
 */
export function decodeEntry(row: Uint8Array, opts: { rowKept?: boolean } = {}): unknown {
  if (row.length === 0 || row[0] !== FORMAT_VERSION) throw new RowFormatError(`row format ${row[0] ?? "(empty)"}, this release reads ${FORMAT_VERSION}`);
  const r = new Reader(row, opts.rowKept === true);
  const value = r.value();
  if (r.pos !== row.length) r.fail("bytes after the value");
  return value;
}

/** The entry's canonical JSON text, as it crosses the network where a stored value is compared (table GC). */
export function entryJson(row: Uint8Array): string {
  return JSON.stringify(decodeEntry(row));
}
