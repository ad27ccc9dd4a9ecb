// Block encryption for SSE-C (customer-provided keys): the stored key record, the per-object
// data key, and the sealed block format. Pure crypto on bytes; what the S3 headers say and which
// S3 error answers a wrong key live in api/s3/sse-c.ts.
//
// The customer's key is never stored, nor any unsalted hash of it (its MD5, which clients send
// and AWS echoes, is a fast hash an attacker holding the metadata could test guesses against).
// An object stores an EncryptionRecord: a random salt and a salted MAC of the key. From the key
// and that salt, HKDF-SHA256 derives two independent values: the MAC that recognises the key
// (compared in constant time) and the object's data key, so the raw customer key never touches
// AES and two objects under one customer key never share a data key.
//
// A sealed block is `format(1) || nonce(12) || AES-256-GCM ciphertext || tag(16)`, the format
// byte authenticated as associated data. Blocks are named by BLAKE3 of what is stored, which for
// a sealed block includes a random nonce: an encrypted block never dedups with a plaintext one
// (nor with another encrypted one), and its name says nothing about its plaintext. Scrub and
// resync check and copy stored bytes by that name, so they work on sealed blocks with no key.
//
// Nothing else is bound as associated data. The version uuid would forbid CopyObject from
// referencing the source's blocks under the same key; the block's place (part, offset) would
// break CompleteMultipartUpload, which renumbers parts 1..N. What remains possible, reordering
// blocks within one object, needs write access to the metadata tables, which can equally delete
// or replace the object; splicing in a block of another object fails (another data key).
//
// Sealed blocks are not compressed: ciphertext does not compress, so the block layer's own
// compression (codec.ts) never applies to them, and the write path seals plaintext as it is
// (model/body-writer.ts). The format byte can say "zstd inside" for a later version that
// compresses first; this one refuses such a block when it opens it (api/s3/get.ts openSealed).
import * as crypto from "node:crypto";
import { toBase64 } from "../util/checksum";
import { assert } from "../util/assert";
import { freeNow } from "../util/buffer-pool";

/** The only record format: HKDF-SHA256 key schedule, AES-256-GCM blocks. */
export const ENCRYPTION_ALG = "AES256-GCM-v1";

/** What an encrypted object (or multipart upload) stores about its key. Never the key. */
export interface EncryptionRecord {
  alg: typeof ENCRYPTION_ALG;
  /** base64 of SALT_BYTES random bytes, one per object (or upload). */
  salt: string;
  /** base64 of the HKDF-derived MAC of the customer key under `salt`. */
  keyMac: string;
}

declare const dataKeyBrand: unique symbol;
/** The AES key of one object's blocks; a distinct type so the customer key cannot be passed by mistake. */
export type DataKey = Uint8Array & { readonly [dataKeyBrand]: true };

/** SSE-C keys are AES-256 keys. */
export const CUSTOMER_KEY_BYTES = 32;
/** One salt per object: 256 bits never repeat, so no two objects share a data key. */
export const SALT_BYTES = 32;
const MAC_BYTES = 32;
const DATA_KEY_BYTES = 32;
/** GCM's standard nonce, drawn at random per block: an object's data key seals at most a few
 * million blocks (5 TiB of 1 MiB blocks is 2^22.3), far below the 2^32 random-nonce bound. */
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const FORMAT_BYTES = 1;
/** Bytes a sealed block adds to its (possibly compressed) payload. */
export const BLOCK_OVERHEAD = FORMAT_BYTES + NONCE_BYTES + TAG_BYTES;

/** Format byte: the payload is the plaintext itself. */
const FORMAT_RAW = 0x01;
/** Format byte: the payload is a zstd frame of the plaintext. */
const FORMAT_ZSTD = 0x02;

// HKDF "info" labels: one extract, two unrelated outputs (the stored MAC reveals nothing of the key).
const INFO_KEY_MAC = "bunker sse-c AES256-GCM-v1 key check";
const INFO_DATA_KEY = "bunker sse-c AES256-GCM-v1 data key";

/** A sealed block that does not open: wrong data key, tampered or truncated bytes, or a payload of the wrong size. */
export class DecryptionError extends Error {}

/** A record this version of Bunker cannot read (written by a newer one). */
export class UnsupportedEncryptionError extends Error {}

function derive(customerKey: Uint8Array, salt: Uint8Array, info: string, length: number): Uint8Array {
  return new Uint8Array(crypto.hkdfSync("sha256", customerKey, salt, info, length));
}

function decodeSalt(record: EncryptionRecord): Uint8Array {
  if (record.alg !== ENCRYPTION_ALG) throw new UnsupportedEncryptionError(`unknown encryption record format ${JSON.stringify(record.alg)}`);
  const salt = Buffer.from(record.salt, "base64");
  assert(salt.length === SALT_BYTES, "an encryption record's salt has SALT_BYTES bytes");
  return salt;
}

function checkCustomerKey(customerKey: Uint8Array): void {
  assert(customerKey.length === CUSTOMER_KEY_BYTES, "an SSE-C key is 32 bytes (checked when parsed)");
}

/** A fresh record (new salt) for data about to be written under `customerKey`, with its data key. */
export function newEncryptionRecord(customerKey: Uint8Array): { record: EncryptionRecord; dataKey: DataKey } {
  checkCustomerKey(customerKey);
  const salt = crypto.randomBytes(SALT_BYTES);
  const record: EncryptionRecord = {
    alg: ENCRYPTION_ALG,
    salt: salt.toString("base64"),
    keyMac: toBase64(derive(customerKey, salt, INFO_KEY_MAC, MAC_BYTES)),
  };
  return { record, dataKey: derive(customerKey, salt, INFO_DATA_KEY, DATA_KEY_BYTES) as DataKey };
}

/**
 * The data key of `record` when `customerKey` is the key it was made with, else undefined. The
 * MAC comparison takes the same time wherever the first differing byte is.
 */
export function unlockDataKey(record: EncryptionRecord, customerKey: Uint8Array): DataKey | undefined {
  checkCustomerKey(customerKey);
  const salt = decodeSalt(record);
  const stored = Buffer.from(record.keyMac, "base64");
  const computed = derive(customerKey, salt, INFO_KEY_MAC, MAC_BYTES);
  if (stored.length !== computed.length || !crypto.timingSafeEqual(stored, computed)) return undefined;
  return derive(customerKey, salt, INFO_DATA_KEY, DATA_KEY_BYTES) as DataKey;
}

/**
 * The record and data key for writing a copy under `customerKey`: `source`'s own when it was made
 * with the same key (`shared`: the copy may reference the source's sealed blocks as they are),
 * else a fresh one (the copy must decrypt and re-seal).
 */
export function recordForCopy(customerKey: Uint8Array, source: EncryptionRecord | undefined): { record: EncryptionRecord; dataKey: DataKey; shared: boolean } {
  if (source) {
    const dataKey = unlockDataKey(source, customerKey);
    if (dataKey) return { record: source, dataKey, shared: true };
  }
  return { ...newEncryptionRecord(customerKey), shared: false };
}

/** Seals `payload` (the plaintext, or its zstd frame when `compressed`) under `dataKey`. */
export function encryptBlock(dataKey: DataKey, payload: Uint8Array, compressed = false): Uint8Array {
  assert(dataKey.length === DATA_KEY_BYTES, "a data key is 32 bytes");
  const format = new Uint8Array([compressed ? FORMAT_ZSTD : FORMAT_RAW]);
  const nonce = crypto.randomBytes(NONCE_BYTES);
  const cipher = crypto.createCipheriv("aes-256-gcm", dataKey, nonce);
  cipher.setAAD(format);
  const body = cipher.update(payload);
  const tail = cipher.final(); // empty for GCM, kept for form
  // One buffer of its own (not a slice of Node's shared pool), so the hash pool may transfer it.
  const out = new Uint8Array(BLOCK_OVERHEAD + body.length + tail.length);
  out.set(format, 0);
  out.set(nonce, FORMAT_BYTES);
  out.set(body, FORMAT_BYTES + NONCE_BYTES);
  out.set(tail, FORMAT_BYTES + NONCE_BYTES + body.length);
  out.set(cipher.getAuthTag(), out.length - TAG_BYTES);
  freeNow(body); // copied out: handed back now rather than at the next collection
  return out;
}

/** Opens a sealed block: its payload and whether that payload is a zstd frame. Throws DecryptionError. */
export function decryptBlock(dataKey: DataKey, sealed: Uint8Array): { payload: Uint8Array; compressed: boolean } {
  assert(dataKey.length === DATA_KEY_BYTES, "a data key is 32 bytes");
  if (sealed.length < BLOCK_OVERHEAD) throw new DecryptionError(`a sealed block has at least ${BLOCK_OVERHEAD} bytes, this one ${sealed.length}`);
  const format = sealed[0]!;
  if (format !== FORMAT_RAW && format !== FORMAT_ZSTD) throw new DecryptionError(`unknown sealed block format ${format}`);
  const nonce = sealed.subarray(FORMAT_BYTES, FORMAT_BYTES + NONCE_BYTES);
  const decipher = crypto.createDecipheriv("aes-256-gcm", dataKey, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(sealed.subarray(0, FORMAT_BYTES));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const body = decipher.update(sealed.subarray(FORMAT_BYTES + NONCE_BYTES, sealed.length - TAG_BYTES));
  let tail: Buffer;
  try {
    tail = decipher.final();
  } catch {
    // Unauthenticated bytes are dropped: `body` is never returned.
    throw new DecryptionError("sealed block failed authentication (wrong data key, or corrupted)");
  }
  const payload = tail.length === 0 ? body : Buffer.concat([body, tail]);
  return { payload, compressed: format === FORMAT_ZSTD };
}

/**
 * Plaintext bytes per block for an encrypted body, so that a sealed block stays within the block
 * size (the block layer's buffer pools, receive bounds and scrub limits all assume it).
 */
export function encryptedBlockPlainSize(blockSize: number): number {
  assert(Number.isSafeInteger(blockSize) && blockSize > BLOCK_OVERHEAD, "the block size leaves room for the encryption overhead");
  return blockSize - BLOCK_OVERHEAD;
}
