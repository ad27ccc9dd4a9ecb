// Streaming reader of multipart/form-data bodies (RFC 7578 / RFC 2046) for S3 PostObject,
// the upload of an HTML form. Owns the wire format only: finding the boundaries, parsing part
// headers, collecting the text fields that precede the part named "file", and handing that part
// out as a stream. What the fields mean (policy, key, metadata) is post-object.ts's business.
//
// Bodies can be gigabytes, so the file part is never buffered: its bytes are passed on as they
// arrive, holding back only a possible start of the next delimiter. Everything else held in
// memory is capped by the constants below, whatever the body or the way it is split.
//
// Wire format:
//   [preamble CRLF] --boundary [LWSP] CRLF <headers> CRLF CRLF <data>
//   CRLF --boundary [LWSP] CRLF <headers> CRLF CRLF <data>          (repeated)
//   CRLF --boundary-- [epilogue]

import { S3Error } from "./errors";

/** Most bytes of all text fields together (AWS allows 20 KB of form fields before the file). */
export const MAX_FORM_FIELDS_BYTES = 64 * 1024;
/** Most bytes of one part's header block: a boundary line's padding plus its headers. */
export const MAX_PART_HEADER_BYTES = 8 * 1024;
/** Longest boundary RFC 2046 allows. */
const MAX_BOUNDARY_LENGTH = 70;
/** Smallest buffer allocated when pending bytes must be joined with a new chunk. */
const MIN_JOIN_BUFFER = 16 * 1024;

const CR = 0x0d;
const DASH = 0x2d;
const SPACE = 0x20;
const TAB = 0x09;
const CRLF = Buffer.from("\r\n", "latin1");
const HEADER_END = Buffer.from("\r\n\r\n", "latin1");
const EMPTY = Buffer.alloc(0);
/** Fatal: a byte sequence that is not UTF-8 would otherwise become U+FFFD in a key or a field. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new S3Error("InvalidArgument", `${what} of your POST request is not valid UTF-8`);
  }
}

export interface FormFile {
  /** The filename of the part's Content-Disposition ("" when absent). */
  filename: string;
  /** The part's Content-Type header, or null. */
  contentType: string | null;
  /** The file's bytes, streamed; ends at the closing boundary. Must be consumed (or returned) once. */
  chunks: AsyncIterable<Uint8Array>;
  /** Stops reading the body now, even while `chunks` waits for bytes (which then fails). */
  cancel(): void;
}

/** What is used of the body's reader; Bun's and Node's typings of web streams differ. */
interface BodyReader {
  read(): Promise<{ done: true; value?: unknown } | { done: false; value: Uint8Array }>;
  cancel(reason?: unknown): Promise<void>;
}

function malformed(message: string): S3Error {
  return new S3Error("MalformedPOSTRequest", message);
}

function truncated(): S3Error {
  return malformed("The body of your POST request ended before the closing multipart boundary.");
}

function headersTooLarge(): S3Error {
  return malformed(`A part's headers in your POST request exceed ${MAX_PART_HEADER_BYTES} bytes.`);
}

function fieldsTooLarge(): S3Error {
  return malformed(`The form fields of your POST request exceed ${MAX_FORM_FIELDS_BYTES} bytes.`);
}

/**
 * The body's bytes not yet consumed, refilled one chunk at a time. Bytes, once written to a
 * buffer here, are never overwritten (joining allocates or appends past the pending bytes), so
 * views handed out stay valid after more is read, and file data can be passed on without a copy.
 */
class ByteSource {
  private buf: Buffer;
  private start = 0;
  private end: number;
  /** `buf` was allocated here, so the space after `end` is free to append to. */
  private owned = false;
  private ended = false;
  /** Why reading was stopped from outside (expire()); every later fill() throws it. */
  private failure: Error | undefined;

  constructor(
    private readonly reader: BodyReader,
    initial: Buffer,
  ) {
    this.buf = initial;
    this.end = initial.length;
  }

  get length(): number {
    return this.end - this.start;
  }

  /** The pending bytes; a view, valid until the next consume(). */
  view(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }

  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) {
      // Drop the reference, so a large chunk already passed on can be collected.
      this.buf = EMPTY;
      this.start = this.end = 0;
      this.owned = false;
    }
  }

  /** Reads one more (non-empty) chunk; false at the end of the body. */
  async fill(): Promise<boolean> {
    while (!this.ended) {
      const r = await this.reader.read();
      if (this.failure) throw this.failure;
      if (r.done) {
        this.ended = true;
        break;
      }
      if (r.value.length === 0) continue;
      this.append(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
      return true;
    }
    if (this.failure) throw this.failure;
    return false;
  }

  private append(chunk: Buffer): void {
    const pending = this.length;
    if (pending === 0) {
      // Nothing to join with: use the chunk as it is, without a copy.
      this.buf = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.owned = false;
    } else if (this.owned && this.end + chunk.length <= this.buf.length) {
      this.buf.set(chunk, this.end);
      this.end += chunk.length;
    } else {
      // Room for as much again, so a body arriving in tiny pieces is joined in amortized
      // linear time; the pending bytes are bounded by the callers, so this buffer is too.
      const total = pending + chunk.length;
      const joined = Buffer.allocUnsafe(Math.max(MIN_JOIN_BUFFER, 2 * total));
      this.buf.copy(joined, 0, this.start, this.end);
      joined.set(chunk, pending);
      this.buf = joined;
      this.start = 0;
      this.end = total;
      this.owned = true;
    }
  }

  /**
   * Index of `needle` in the pending bytes, reading more as needed. The match must end within
   * the first `limit` pending bytes, which bounds what is held while looking for it.
   */
  async find(needle: Buffer, limit: number, tooLarge: () => S3Error): Promise<number> {
    let from = 0;
    for (;;) {
      const v = this.view();
      const i = v.indexOf(needle, from);
      if (i >= 0) {
        if (i + needle.length > limit) throw tooLarge();
        return i;
      }
      if (v.length >= limit) throw tooLarge();
      // No match starts before here, so the next search need not look there again.
      from = Math.max(0, v.length - needle.length + 1);
      if (!(await this.fill())) throw truncated();
    }
  }

  /** Discards bytes up to and including the next `delimiter`. */
  async skipPast(delimiter: Buffer): Promise<void> {
    for (;;) {
      const v = this.view();
      const i = v.indexOf(delimiter);
      if (i >= 0) {
        this.consume(i + delimiter.length);
        return;
      }
      this.consume(v.length - heldBack(v, delimiter.length));
      if (!(await this.fill())) throw truncated();
    }
  }

  /** Reads and discards the rest of the body. */
  async drain(): Promise<void> {
    do this.consume(this.length);
    while (await this.fill());
  }

  /** Stops reading with `err`, even while a fill() waits for bytes (it then throws `err`). */
  expire(err: Error): void {
    this.failure ??= err;
    this.cancel(err);
  }

  /** Stops reading the body, e.g. after an error; the request's stream is released. */
  cancel(reason?: unknown): void {
    this.ended = true;
    this.buf = EMPTY;
    this.start = this.end = 0;
    this.reader.cancel(reason).catch(() => {});
  }
}

/**
 * How many bytes at the end of `v` must be kept because they may begin a delimiter that the
 * next chunk completes: from the first CR among the last (delimiter length - 1) bytes, as every
 * delimiter starts with CR. Less than the delimiter's length, usually nothing.
 */
function heldBack(v: Buffer, delimiterLength: number): number {
  const i = v.indexOf(CR, Math.max(0, v.length - (delimiterLength - 1)));
  return i < 0 ? 0 : v.length - i;
}

/**
 * Reads what follows a delimiter: "--" closes the body (null); otherwise optional padding, the
 * line's CRLF and the part's headers up to the blank line, returned as text (all consumed).
 */
async function readPartHeaders(src: ByteSource): Promise<string | null> {
  while (src.length < 2) if (!(await src.fill())) throw truncated();
  const head = src.view();
  if (head[0] === DASH && head[1] === DASH) {
    src.consume(2);
    return null;
  }
  const lineEnd = await src.find(CRLF, MAX_PART_HEADER_BYTES, headersTooLarge);
  // The boundary must not occur in the data (RFC 2046), so anything but padding after it means
  // the body is not what the sender framed; treating it as data would guess.
  const line = src.view();
  for (let i = 0; i < lineEnd; i++) {
    if (line[i] !== SPACE && line[i] !== TAB) throw malformed("A multipart boundary in your POST request is followed by unexpected data.");
  }
  // Searched from the line's CRLF, so that a part without headers ends at once.
  const end = await src.find(HEADER_END, MAX_PART_HEADER_BYTES, headersTooLarge);
  const v = src.view();
  const text = end > lineEnd ? decodeUtf8(v.subarray(lineEnd + 2, end), "A part's headers") : "";
  src.consume(end + HEADER_END.length);
  return text;
}

/** Header names (lowercased) to values; folded lines are unfolded, the first value wins. */
function parseHeaders(text: string): Map<string, string> {
  const lines: string[] = [];
  for (const line of text.split("\r\n")) {
    if ((line.startsWith(" ") || line.startsWith("\t")) && lines.length > 0) lines[lines.length - 1] += " " + line.trim();
    else lines.push(line);
  }
  const headers = new Map<string, string>();
  for (const line of lines) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed("A part of your POST request has a malformed header.");
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return headers;
}

/**
 * A header value with parameters, `type; name=value; name="quoted"`: the type (lowercased) and
 * the parameters (names lowercased, the first of a name wins). Quoted values take backslash
 * escapes of `"` and `\` only: browsers send Windows paths with bare backslashes, which other
 * escapes would eat. Unquoted values run to the next `;`, tolerating clients that do not quote.
 */
function parseParameterized(value: string): { type: string; params: Map<string, string> } {
  const semi = value.indexOf(";");
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const params = new Map<string, string>();
  let i = semi < 0 ? value.length : semi + 1;
  while (i < value.length) {
    const eq = value.indexOf("=", i);
    const next = value.indexOf(";", i);
    if (eq < 0 || (next >= 0 && next < eq)) {
      // A parameter without a value: nothing to record.
      i = next < 0 ? value.length : next + 1;
      continue;
    }
    const name = value.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    while (i < value.length && (value[i] === " " || value[i] === "\t")) i++;
    let v: string;
    if (value[i] === '"') {
      v = "";
      i++;
      while (i < value.length && value[i] !== '"') {
        if (value[i] === "\\" && (value[i + 1] === '"' || value[i + 1] === "\\")) i++;
        v += value[i];
        i++;
      }
      // Past the closing quote and anything up to the next parameter.
      const after = value.indexOf(";", i);
      i = after < 0 ? value.length : after + 1;
    } else {
      const end = value.indexOf(";", i);
      v = value.slice(i, end < 0 ? value.length : end).trim();
      i = end < 0 ? value.length : end + 1;
    }
    if (name !== "" && !params.has(name)) params.set(name, v);
  }
  return { type, params };
}

/** The boundary of a multipart/form-data Content-Type, validated. */
function parseBoundary(contentType: string): string {
  const { type, params } = parseParameterized(contentType);
  if (type !== "multipart/form-data") throw malformed("The Content-Type of your POST request must be multipart/form-data.");
  const boundary = params.get("boundary");
  if (boundary === undefined) throw malformed("The Content-Type of your POST request has no multipart boundary.");
  // RFC 2046: 1 to 70 characters, not ending in a space. Any printable ASCII is accepted rather
  // than just RFC 2046's set, as long as it can be matched byte for byte.
  if (boundary.length < 1 || boundary.length > MAX_BOUNDARY_LENGTH || boundary.endsWith(" ") || !/^[\x20-\x7e]+$/.test(boundary))
    throw malformed("The multipart boundary of your POST request is invalid.");
  return boundary;
}

/**
 * The file part's bytes, up to its delimiter; then the rest of the body is read and discarded,
 * so the iteration ends only once the body is known to be complete. Stopping early (return)
 * cancels the body.
 */
async function* fileChunks(src: ByteSource, delimiter: Buffer): AsyncGenerator<Uint8Array> {
  let finished = false;
  try {
    for (;;) {
      const v = src.view();
      const i = v.indexOf(delimiter);
      if (i >= 0) {
        src.consume(i + delimiter.length);
        if (i > 0) yield v.subarray(0, i);
        break;
      }
      const n = v.length - heldBack(v, delimiter.length);
      if (n > 0) {
        src.consume(n);
        yield v.subarray(0, n);
      }
      if (!(await src.fill())) throw truncated();
    }
    // Parts after the file are ignored, as AWS does; only their framing is checked.
    while ((await readPartHeaders(src)) !== null) await src.skipPast(delimiter);
    await src.drain();
    finished = true;
  } finally {
    if (!finished) src.cancel();
  }
}

/**
 * Reads a multipart/form-data body: every text field before the part named "file" (names
 * lowercased; the first value of a name wins, as S3), then the file part as a stream. Parts
 * after the file are read and ignored (AWS ignores them) once the file stream is drained.
 * `contentType` is the request's Content-Type header (carries the boundary). When the fields
 * (up to the file part's headers) have not all arrived by `fieldsDeadline` (a Date.now() time),
 * reading stops with RequestTimeout, however steadily the bytes trickle in.
 */
export async function readPostForm(
  body: ReadableStream<Uint8Array>,
  contentType: string,
  fieldsDeadline?: number,
): Promise<{ fields: Map<string, string>; file: FormFile | undefined }> {
  const boundary = parseBoundary(contentType);
  const delimiter = Buffer.from(`\r\n--${boundary}`, "latin1");
  // A CRLF in front lets the first boundary, which may open the body, match as a delimiter.
  const src = new ByteSource(body.getReader(), Buffer.from(CRLF));
  const fields = new Map<string, string>();
  // Names count too: otherwise many empty fields could grow the map without bound.
  let budget = MAX_FORM_FIELDS_BYTES;
  const timer =
    fieldsDeadline === undefined
      ? undefined
      : setTimeout(() => src.expire(new S3Error("RequestTimeout", "Your POST request did not send its form fields in time.")), Math.max(0, fieldsDeadline - Date.now()));
  try {
    await src.skipPast(delimiter);
    for (;;) {
      const headerText = await readPartHeaders(src);
      if (headerText === null) {
        await src.drain();
        return { fields, file: undefined };
      }
      const headers = parseHeaders(headerText);
      const { params } = parseParameterized(headers.get("content-disposition") ?? "");
      const name = params.get("name");
      if (name === undefined || name === "") throw malformed("A part of your POST request has no field name.");
      const key = name.toLowerCase();
      if (key === "file") {
        const file: FormFile = {
          filename: params.get("filename") ?? "",
          contentType: headers.get("content-type") ?? null,
          chunks: fileChunks(src, delimiter),
          cancel: () => src.cancel(),
        };
        return { fields, file };
      }
      budget -= Buffer.byteLength(name);
      if (budget < 0) throw fieldsTooLarge();
      const end = await src.find(delimiter, budget + delimiter.length, fieldsTooLarge);
      budget -= end;
      if (!fields.has(key)) fields.set(key, decodeUtf8(src.view().subarray(0, end), `The field ${key}`));
      src.consume(end + delimiter.length);
    }
  } catch (err) {
    src.cancel(err);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
