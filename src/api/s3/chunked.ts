// Decoder for `aws-chunked` request bodies (SigV4 streaming uploads):
// strips the chunk framing, verifies the chunk-signature chain and the
// trailer signature when the payload mode is signed, and collects trailing
// headers (e.g. x-amz-checksum-crc32c). Works on the body as it arrives,
// in pieces split at arbitrary byte positions, holding only one framing
// line at a time; chunk data is hashed incrementally and passed through.
//
// Wire format:
//   <hex size>[;chunk-signature=<64 hex>]\r\n <data> \r\n      (repeated)
//   0[;chunk-signature=<64 hex>]\r\n
//   [name:value\r\n ...] [x-amz-trailer-signature:<64 hex>\r\n]  (trailer modes)
//   \r\n
// Tolerated, because SDKs and AWS's own examples differ: a blank line
// between the final chunk and the trailers, bare "\n" line ends, extra blank
// lines at the end, and a body that ends without the final blank line.

import { S3Error } from "./errors.ts";
import { EMPTY_SHA256, sha256Hex, signatureHex, signaturesEqual, type AuthContext } from "./sigv4.ts";

/** Largest chunk accepted. SDKs send 64 KiB, some clients up to a few MiB. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** Longest framing line (chunk header or trailer), CR LF included. */
export const MAX_LINE_LENGTH = 4 * 1024;
/** Most trailing headers accepted in one body. */
export const MAX_TRAILERS = 16;
/** Hex digits in a chunk size: enough for MAX_CHUNK_SIZE, short enough to parse safely. */
const MAX_SIZE_DIGITS = 8;

const CHUNK_STS_PREFIX = "AWS4-HMAC-SHA256-PAYLOAD";
const TRAILER_STS_PREFIX = "AWS4-HMAC-SHA256-TRAILER";
const TRAILER_SIGNATURE_NAME = "x-amz-trailer-signature";
const CHUNK_SIGNATURE_EXT = "chunk-signature";

const CR = 0x0d;
const LF = 0x0a;
const SIGNATURE_RE = /^[0-9a-f]{64}$/;
const SIZE_RE = /^[0-9a-fA-F]+$/;

type State =
  | "header" // reading a chunk-size line
  | "data" // passing chunk data through
  | "data-end" // expecting the CR LF after chunk data
  | "trailers" // after the final chunk: trailer lines and blank lines
  | "done"; // terminator seen: only blank lines may follow

function malformed(detail: string): S3Error {
  return new S3Error("InvalidRequest", `Malformed aws-chunked body: ${detail}`);
}

function incomplete(): S3Error {
  return new S3Error("IncompleteBody", "The request body ended before the final aws-chunked chunk.");
}

function badSignature(what: string): S3Error {
  return new S3Error(
    "SignatureDoesNotMatch",
    `The ${what} signature we calculated does not match the signature you provided.`,
  );
}

export class AwsChunkedDecoder {
  /** Trailing headers by lower-case name; complete and (when signed) verified once chunks() has finished. */
  readonly trailers = new Map<string, string>();

  private readonly source: AsyncIterable<Uint8Array>;
  private readonly auth: AuthContext;
  private readonly signed: boolean;
  private readonly trailerAllowed: boolean;
  private readonly maxChunkSize: number;
  private readonly expectedTrailers: readonly string[];
  private started = false;

  // Parser state, kept on the instance so that step() can stay a plain loop.
  private state: State = "header";
  private readonly line = new Uint8Array(MAX_LINE_LENGTH);
  private lineLength = 0;
  private remaining = 0;
  private sawCr = false;
  private chunkSignature = "";
  private previousSignature: string;
  private hasher: Bun.CryptoHasher | null = null;
  private pendingTrailers: Array<[string, string]> = [];
  private trailerSignatureSeen = false;

  /**
   * `expectedTrailers`: trailer names announced in x-amz-trailer; a body that
   * ends without one of them is incomplete (the trailers come last, so a body
   * cut just before them would otherwise look whole).
   */
  constructor(
    source: AsyncIterable<Uint8Array>,
    auth: AuthContext,
    opts: { maxChunkSize?: number; expectedTrailers?: readonly string[] } = {},
  ) {
    const kind = auth.payload.kind;
    if (kind !== "streaming-signed" && kind !== "streaming-signed-trailer" && kind !== "streaming-unsigned-trailer") {
      throw new Error(`AwsChunkedDecoder: payload mode ${kind} is not aws-chunked`);
    }
    const max = opts.maxChunkSize ?? MAX_CHUNK_SIZE;
    if (!(Number.isInteger(max) && max > 0 && max <= MAX_CHUNK_SIZE)) {
      throw new Error(`AwsChunkedDecoder: maxChunkSize must be in 1..${MAX_CHUNK_SIZE}`);
    }
    this.source = source;
    this.auth = auth;
    this.signed = kind !== "streaming-unsigned-trailer";
    this.trailerAllowed = kind !== "streaming-signed";
    this.maxChunkSize = max;
    this.expectedTrailers = (opts.expectedTrailers ?? []).map((n) => n.trim().toLowerCase()).filter((n) => n !== "");
    if (this.expectedTrailers.length > 0 && !this.trailerAllowed) {
      throw new S3Error("InvalidRequest", "x-amz-trailer cannot be used with STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    }
    this.previousSignature = auth.seedSignature;
  }

  /**
   * Decoded payload bytes, as views into the source's buffers. Bytes are
   * handed out before their chunk's signature can be checked (that needs the
   * whole chunk): the payload is authentic only once this generator has
   * returned without throwing.
   */
  async *chunks(): AsyncGenerator<Uint8Array> {
    if (this.started) throw new Error("AwsChunkedDecoder: chunks() may only be iterated once");
    this.started = true;
    for await (const piece of this.source) {
      let pos = 0;
      while (pos < piece.length) {
        if (this.state === "data") {
          const n = Math.min(this.remaining, piece.length - pos);
          const out = piece.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          this.hasher?.update(out);
          if (this.remaining === 0) this.state = "data-end";
          yield out;
        } else {
          pos = this.step(piece, pos);
        }
      }
    }
    this.finish();
  }

  /** Consumes framing bytes from piece[pos..] and returns the new position. */
  private step(piece: Uint8Array, pos: number): number {
    switch (this.state) {
      case "data-end":
        return this.stepDataEnd(piece, pos);
      case "header":
      case "trailers":
      case "done": {
        const lf = piece.indexOf(LF, pos);
        const end = lf < 0 ? piece.length : lf + 1;
        if (this.lineLength + (end - pos) > MAX_LINE_LENGTH) {
          throw malformed(`a line is longer than ${MAX_LINE_LENGTH} bytes`);
        }
        this.line.set(piece.subarray(pos, end), this.lineLength);
        this.lineLength += end - pos;
        if (lf >= 0) this.onLine(this.takeLine());
        return end;
      }
      case "data":
        throw new Error("unreachable: data is handled by chunks()");
    }
  }

  private stepDataEnd(piece: Uint8Array, pos: number): number {
    const b = piece[pos]!;
    if (b === CR && !this.sawCr) {
      this.sawCr = true;
      return pos + 1;
    }
    if (b !== LF) throw malformed("chunk data is not followed by CRLF");
    this.sawCr = false;
    this.endChunk();
    this.state = "header";
    return pos + 1;
  }

  /** The buffered line without its LF (and CR), as a latin1 string. */
  private takeLine(): string {
    let n = this.lineLength - 1; // drop LF
    if (n > 0 && this.line[n - 1] === CR) n--;
    this.lineLength = 0;
    return Buffer.from(this.line.buffer, this.line.byteOffset, n).toString("latin1");
  }

  private onLine(line: string): void {
    if (this.state === "header") this.onChunkHeader(line);
    else if (this.state === "trailers") this.onTrailerLine(line);
    else if (line.trim() !== "") throw malformed("data after the end of the body");
  }

  private onChunkHeader(line: string): void {
    const parts = line.split(";");
    const sizeText = parts[0]!.trim();
    if (!SIZE_RE.test(sizeText) || sizeText.length > MAX_SIZE_DIGITS) throw malformed(`bad chunk size "${sizeText}"`);
    const size = parseInt(sizeText, 16);
    if (size > this.maxChunkSize) throw malformed(`chunk of ${size} bytes exceeds the ${this.maxChunkSize}-byte limit`);

    if (this.signed) {
      let sig: string | undefined;
      for (let i = 1; i < parts.length; i++) {
        const ext = parts[i]!;
        const eq = ext.indexOf("=");
        if (eq >= 0 && ext.slice(0, eq).trim() === CHUNK_SIGNATURE_EXT) sig = ext.slice(eq + 1).trim();
      }
      if (sig === undefined || !SIGNATURE_RE.test(sig)) throw badSignature("chunk");
      this.chunkSignature = sig;
      this.hasher = new Bun.CryptoHasher("sha256");
    }

    if (size === 0) {
      // The final chunk is signed like any other, over empty data.
      this.endChunk();
      this.state = "trailers";
    } else {
      this.remaining = size;
      this.state = "data";
    }
  }

  /** Verifies the chunk just read (signed modes) and advances the chain. */
  private endChunk(): void {
    if (!this.signed) return;
    const hasher = this.hasher;
    if (hasher === null) throw new Error("invariant: signed chunk without a hasher");
    const a = this.auth;
    const sts = `${CHUNK_STS_PREFIX}\n${a.amzDate}\n${a.scope}\n${this.previousSignature}\n${EMPTY_SHA256}\n${hasher.digest("hex")}`;
    if (!signaturesEqual(signatureHex(a.signingKey, sts), this.chunkSignature)) throw badSignature("chunk");
    this.previousSignature = this.chunkSignature;
    this.hasher = null;
  }

  private onTrailerLine(line: string): void {
    if (line.trim() === "") {
      // A blank line ends the trailer section, except one sent before any trailer.
      if (!this.trailerAllowed || this.pendingTrailers.length > 0 || this.trailerSignatureSeen) this.state = "done";
      return;
    }
    if (!this.trailerAllowed) throw malformed("trailing headers are not allowed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    if (this.trailerSignatureSeen) throw malformed("trailing header after x-amz-trailer-signature");
    const colon = line.indexOf(":");
    const name = colon < 0 ? "" : line.slice(0, colon).trim().toLowerCase();
    if (name === "") throw malformed("bad trailing header line");
    const value = line.slice(colon + 1).trim();

    if (name === TRAILER_SIGNATURE_NAME) {
      if (!this.signed) return; // unsigned trailers carry no signature to check
      this.verifyTrailerSignature(value);
      this.trailerSignatureSeen = true;
      return;
    }
    if (this.pendingTrailers.length >= MAX_TRAILERS) throw malformed(`more than ${MAX_TRAILERS} trailing headers`);
    if (this.pendingTrailers.some(([n]) => n === name)) throw malformed(`trailing header ${name} repeated`);
    this.pendingTrailers.push([name, value]);
  }

  private verifyTrailerSignature(given: string): void {
    let canonical = "";
    for (const [n, v] of this.pendingTrailers) canonical += `${n}:${v}\n`;
    const a = this.auth;
    const sts = `${TRAILER_STS_PREFIX}\n${a.amzDate}\n${a.scope}\n${this.previousSignature}\n${sha256Hex(canonical)}`;
    if (!SIGNATURE_RE.test(given) || !signaturesEqual(signatureHex(a.signingKey, sts), given)) {
      throw badSignature("trailer");
    }
  }

  /** End of input: everything up to the final chunk must have arrived. */
  private finish(): void {
    if (this.state !== "trailers" && this.state !== "done") throw incomplete();
    if (this.lineLength > 0) throw incomplete(); // a line cut short
    // Signed trailers are trusted only with their signature; its absence is a cut body.
    if (this.signed && this.trailerAllowed && !this.trailerSignatureSeen) throw incomplete();
    for (const name of this.expectedTrailers) {
      if (!this.pendingTrailers.some(([n]) => n === name)) throw incomplete();
    }
    for (const [n, v] of this.pendingTrailers) this.trailers.set(n, v);
  }
}
