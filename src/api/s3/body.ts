// Request bodies as S3 sends them: plain, with a signed SHA-256, or aws-chunked (with chunk
// signatures and trailers). Yields the payload bytes as they arrive and enforces the size
// the client declared, so a truncated upload can never be stored as complete.
import { CryptoHasher } from "bun";
import { parseDecimal } from "../../util/decimal";
import { MAX_PUT_SIZE } from "../../util/limits";
import { AwsChunkedDecoder } from "./chunked";
import { S3Error } from "./errors";
import { declaredDigests, verifyDigests } from "./headers";
import { createChecksum, type ChecksumAlgorithm } from "../../util/checksum";
import type { S3Request } from "./context";

/**
 * Largest limit of a document body (XML configurations, Delete lists): such a body may come
 * without a declared length or framing (then it is empty). A reader with a larger limit reads
 * object data, which must declare its length or come HTTP-chunked.
 */
const MAX_UNDECLARED_BODY = 4 * 1024 * 1024;

/**
 * The one transfer coding a request body may carry. node:http strips chunked framing and
 * hands any other coding (gzip, deflate...) through as it came: stored, it would be an object
 * other than the one sent. AWS answers those 501 NotImplemented, and so do we.
 */
const CHUNKED = "chunked";

/**
 * How a request frames its body, read from its headers: plain with a Content-Length, HTTP
 * chunked (Transfer-Encoding: chunked, which ends with an explicit last chunk, so a cut
 * connection is never taken for the end), or none (no body).
 */
function framing(h: Headers): "length" | "chunked" | "none" {
  const te = h.get("transfer-encoding");
  if (te !== null) {
    if (te.trim().toLowerCase() !== CHUNKED)
      throw new S3Error("NotImplemented", `A header you provided implies functionality that is not implemented: Transfer-Encoding: ${te}`);
    return "chunked";
  }
  return h.get("content-length") !== null ? "length" : "none";
}

export class PayloadReader {
  /**
   * Payload length the client announced, when it did. Undefined for an object body sent
   * HTTP-chunked without one (AWS's sigv4-streaming rules): it is then bounded by `maxSize`
   * as it is read, and its size is known only at its end.
   */
  readonly declaredLength: number | undefined;
  private decoder: AwsChunkedDecoder | undefined;
  private consumed = false;

  constructor(
    private readonly r: S3Request,
    private readonly maxSize: number = MAX_PUT_SIZE,
  ) {
    const h = r.headers;
    const streaming = r.auth.payload.kind.startsWith("streaming");
    const frame = framing(h);
    // Object data (PutObject, UploadPart) takes more than any document: it must say how it ends.
    const objectData = maxSize > MAX_UNDECLARED_BODY;
    const declared = streaming ? h.get("x-amz-decoded-content-length") : h.get("content-length");
    if (declared !== null) {
      const n = parseDecimal(declared, 0, Number.MAX_SAFE_INTEGER);
      if (n === undefined) throw new S3Error("InvalidArgument", `Invalid content length: ${declared}`);
      if (n > maxSize) throw new S3Error("EntityTooLarge", `Your proposed upload exceeds the maximum allowed size (${maxSize} bytes)`);
      this.declaredLength = n;
    } else if (!objectData) {
      // A document: no framing at all is an empty body (HTTP/1.1); chunked is read to its end.
      this.declaredLength = frame === "none" && !streaming ? 0 : undefined;
    } else if (frame === "chunked" && !streaming) {
      // Accepted without a length: the chunked framing marks the body's end, and the payload
      // hash (when signed) vouches for its bytes.
      this.declaredLength = undefined;
    } else {
      // Neither Content-Length nor chunked framing (an HTTP/1.1 request without them has no
      // body), or aws-chunked without the x-amz-decoded-content-length AWS requires: refused
      // as AWS does, rather than stored empty or at a size nobody announced.
      throw new S3Error("MissingContentLength", "You must provide the Content-Length HTTP header");
    }
  }

  /** Trailing headers of an aws-chunked body (x-amz-checksum-*), after chunks() ended. */
  get trailers(): Map<string, string> {
    return this.decoder?.trailers ?? new Map();
  }

  async *chunks(): AsyncGenerator<Uint8Array> {
    if (this.consumed) throw new Error("request body read twice");
    this.consumed = true;
    const body = this.r.request.body;
    const source: AsyncIterable<Uint8Array> = body ?? (async function* () {})();
    const payload = this.r.auth.payload;
    let stream: AsyncIterable<Uint8Array> = source;
    if (payload.kind.startsWith("streaming")) {
      const trailer = this.r.headers.get("x-amz-trailer");
      const expectedTrailers = trailer ? trailer.split(",").map((t) => t.trim().toLowerCase()).filter(Boolean) : [];
      this.decoder = new AwsChunkedDecoder(source, this.r.auth, { expectedTrailers });
      stream = this.decoder.chunks();
    }
    const sha = payload.kind === "sha256" ? new CryptoHasher("sha256") : undefined;
    let total = 0;
    for await (const chunk of stream) {
      total += chunk.length;
      if (total > this.maxSize) throw new S3Error("EntityTooLarge", `Your upload exceeds the maximum allowed size (${this.maxSize} bytes)`);
      if (this.declaredLength !== undefined && total > this.declaredLength)
        throw new S3Error("IncompleteBody", "The request body is longer than its declared length");
      sha?.update(chunk);
      yield chunk;
    }
    if (this.declaredLength !== undefined && total !== this.declaredLength)
      throw new S3Error("IncompleteBody", `You did not provide the number of bytes specified by the Content-Length HTTP header (got ${total} of ${this.declaredLength})`);
    if (sha && payload.kind === "sha256" && sha.digest("hex") !== payload.hex.toLowerCase())
      throw new S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed");
  }
}

/**
 * Reads a small request body (XML configuration, Delete lists) with a hard size bound, and
 * checks it against the Content-MD5 and x-amz-checksum-* the client declared, as an object
 * body is: a document that arrived damaged is refused, never applied.
 */
export async function readSmallBody(r: S3Request, maxBytes: number, checksumHeadersDescribeBody = true): Promise<string> {
  const declared = declaredDigests(r.headers);
  // CompleteMultipartUpload's x-amz-checksum-* describe the object: only Content-MD5 is its body's.
  const digests = checksumHeadersDescribeBody ? declared : { contentMd5: declared.contentMd5, checksumInTrailer: false };
  const reader = new PayloadReader(r, maxBytes);
  const parts: Uint8Array[] = [];
  for await (const chunk of reader.chunks()) parts.push(chunk);
  const body = Buffer.concat(parts);
  const checksums = new Map<ChecksumAlgorithm, Uint8Array>();
  if (digests.checksumAlgorithm) {
    const checksum = createChecksum(digests.checksumAlgorithm);
    checksum.update(body);
    checksums.set(digests.checksumAlgorithm, checksum.digest());
  }
  const md5 = new Uint8Array(new CryptoHasher("md5").update(body).digest());
  verifyDigests(digests, { size: body.length, md5, checksums, blockCount: 0 }, reader.trailers);
  return body.toString("utf8");
}
