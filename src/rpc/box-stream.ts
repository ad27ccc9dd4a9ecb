// The encrypted record layer under the frames (the role of SSB's "box stream"): it owns the
// per-direction AES-256-GCM keys and counters, sealing outgoing plaintext into records and
// opening incoming ones.
//
// Record (big-endian): u32 ciphertext length L | L bytes ciphertext | 16-byte GCM tag.
// The nonce is never sent: it is 4 zero bytes then a u64 counter that both ends advance per
// record, so a replayed, dropped, reordered or spliced record fails authentication and the
// connection is closed. The length prefix is authenticated as associated data. Each direction
// has its own key (from the handshake), so the two counters can never reuse a nonce.
// AES-256-GCM rather than ChaCha20-Poly1305: Bun's node:crypto has no ChaCha20-Poly1305, and
// AES-GCM with AES-NI runs at ~4.8 GB/s sealing 64 KiB records here.
//
// node:crypto allocates every output: the sealer frees each once copied into the writer's
// buffer, and the opener frees the received chunks once it has opened the records they carried
// (util/buffer-pool.ts freeNow: memory left to the collector was handed back to the OS and
// faulted in again, which cost a receiving replica more than its work). A record spread over
// several chunks is put together in one reused buffer.
import { createCipheriv, createDecipheriv } from "node:crypto";
import { AssertionError, assert } from "../util/assert.ts";
import { freeNow } from "../util/buffer-pool.ts";
import { ByteQueue } from "./byte-queue.ts";
import { FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD } from "./frame.ts";

export const RECORD_HEADER_BYTES = 4;
export const RECORD_TAG_BYTES = 16;
export const SESSION_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const CIPHER = "aes-256-gcm";
/** Largest plaintext per record: two maximal frames. A bigger length prefix is garbage. */
export const MAX_RECORD_PLAINTEXT = 2 * (MAX_FRAME_PAYLOAD + FRAME_HEADER_BYTES);
/** Bytes on the wire of a record carrying `plaintext` bytes. */
export function recordSize(plaintext: number): number {
  return RECORD_HEADER_BYTES + plaintext + RECORD_TAG_BYTES;
}
/** Largest record on the wire. */
export const MAX_RECORD_BYTES = RECORD_HEADER_BYTES + MAX_RECORD_PLAINTEXT + RECORD_TAG_BYTES;
/** A u64 counter never wraps in practice; stop at 2^53 so it stays an exact JS number. */
const MAX_RECORDS = Number.MAX_SAFE_INTEGER;

export class RecordError extends Error {
  constructor(message: string) {
    super(`rpc record: ${message}`);
    this.name = "RecordError";
  }
}

function nonceFor(counter: number, out: Buffer): Buffer {
  assert(counter < MAX_RECORDS, "record counter below 2^53");
  out.fill(0, 0, 4);
  out.writeUIntBE(Math.floor(counter / 2 ** 32), 4, 4);
  out.writeUInt32BE(counter >>> 0, 8);
  return out;
}

export class BoxSealer {
  private counter = 0;
  private readonly nonce = Buffer.alloc(NONCE_BYTES);

  constructor(private readonly key: Uint8Array) {
    assert(key.length === SESSION_KEY_BYTES, "session key is 32 bytes");
  }

  /** Encrypts the concatenation of `parts` (total `length` bytes) into a new record. */
  seal(parts: readonly Uint8Array[], length: number): Buffer {
    const out = Buffer.allocUnsafe(recordSize(length));
    this.sealInto(out, 0, parts, length);
    return out;
  }

  /**
   * Encrypts the concatenation of `parts` (total `length` bytes) as one record written into
   * `out` at `offset`; returns the record's size. Lets the writer reuse one output buffer.
   */
  sealInto(out: Buffer, offset: number, parts: readonly Uint8Array[], length: number): number {
    assert(length > 0 && length <= MAX_RECORD_PLAINTEXT, "record plaintext within bounds");
    const size = recordSize(length);
    assert(offset + size <= out.length, "record fits the output buffer");
    out.writeUInt32BE(length, offset);
    const cipher = createCipheriv(CIPHER, this.key, nonceFor(this.counter++, this.nonce), {
      authTagLength: RECORD_TAG_BYTES,
    });
    cipher.setAAD(out.subarray(offset, offset + RECORD_HEADER_BYTES));
    let pos = offset + RECORD_HEADER_BYTES;
    for (const part of parts) {
      if (part.length === 0) continue;
      const sealed = cipher.update(part);
      pos += sealed.copy(out, pos);
      freeNow(sealed);
    }
    pos += cipher.final().copy(out, pos);
    assert(pos === offset + RECORD_HEADER_BYTES + length, "sealed length matches the declared plaintext length");
    cipher.getAuthTag().copy(out, pos);
    return size;
  }
}

export class BoxOpener {
  private counter = 0;
  private readonly nonce = Buffer.alloc(NONCE_BYTES);
  private readonly queue = new ByteQueue(true);
  private failed: RecordError | null = null;
  /** Where a record's ciphertext spread over several chunks is put together (allocated on first need). */
  private spanning: Uint8Array | null = null;

  constructor(private readonly key: Uint8Array) {
    assert(key.length === SESSION_KEY_BYTES, "session key is 32 bytes");
  }

  /**
   * Feeds received ciphertext (split anywhere); returns the plaintexts of completed records,
   * each in memory of its own (the caller may free it once done, util/buffer-pool freeNow).
   * The chunks read to their end are freed here: a caller must pass chunks it does not read
   * again (a socket read), or views that do not cover their whole buffer (kept as they are).
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    this.queue.push(chunk);
    const out: Uint8Array[] = [];
    try {
      while (this.queue.length >= RECORD_HEADER_BYTES) {
        const length = this.queue.peekU32(0);
        if (length === 0 || length > MAX_RECORD_PLAINTEXT) {
          this.failed = new RecordError(`record length ${length} outside 1..${MAX_RECORD_PLAINTEXT}`);
          throw this.failed;
        }
        if (this.queue.length < RECORD_HEADER_BYTES + length + RECORD_TAG_BYTES) break;
        const header = this.queue.read(RECORD_HEADER_BYTES);
        const ciphertext = this.queue.read(length, (this.spanning ??= Buffer.allocUnsafeSlow(MAX_RECORD_PLAINTEXT)));
        const tag = this.queue.read(RECORD_TAG_BYTES);
        out.push(this.open(header, ciphertext, tag));
      }
    } finally {
      // Every view of these chunks was read above (opened, copied out).
      for (const done of this.queue.takeDropped()) if (done.byteOffset === 0 && done.byteLength === done.buffer.byteLength) freeNow(done);
    }
    return out;
  }

  /** Bytes buffered towards the next record. */
  get pending(): number {
    return this.queue.length;
  }

  private open(header: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Uint8Array {
    const decipher = createDecipheriv(CIPHER, this.key, nonceFor(this.counter++, this.nonce), {
      authTagLength: RECORD_TAG_BYTES,
    });
    decipher.setAAD(header);
    decipher.setAuthTag(tag);
    const plain = decipher.update(ciphertext);
    try {
      const rest = decipher.final();
      assert(rest.length === 0, "GCM yields all plaintext from update()");
    } catch (err) {
      if (err instanceof AssertionError) throw err;
      this.failed = new RecordError("authentication failed (wrong key, or tampered, replayed or reordered traffic)");
      throw this.failed;
    }
    return plain;
  }
}
