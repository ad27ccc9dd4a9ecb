import { describe, expect, spyOn, test } from "bun:test";
import * as crypto from "node:crypto";
import {
  BLOCK_OVERHEAD,
  DecryptionError,
  ENCRYPTION_ALG,
  UnsupportedEncryptionError,
  decryptBlock,
  encryptBlock,
  encryptedBlockPlainSize,
  newEncryptionRecord,
  recordForCopy,
  unlockDataKey,
  type DataKey,
  type EncryptionRecord,
} from "../../../src/block/encryption.ts";
import { blake3Sync, hashHex } from "../../../src/block/hash.ts";

const MiB = 1 << 20;
const key = () => new Uint8Array(crypto.randomBytes(32));

/** Text-like bytes that zstd shrinks several times. */
function text(len: number): Uint8Array {
  const line = "bucket object version block layout quorum node 0123456789\n";
  return new TextEncoder().encode(line.repeat(Math.ceil(len / line.length))).subarray(0, len);
}

function fresh(): { customerKey: Uint8Array; record: EncryptionRecord; dataKey: DataKey } {
  const customerKey = key();
  return { customerKey, ...newEncryptionRecord(customerKey) };
}

describe("block encryption", () => {
  test("a block round-trips, with BLOCK_OVERHEAD bytes added", () => {
    const { dataKey } = fresh();
    const plain = new Uint8Array(crypto.randomBytes(MiB - BLOCK_OVERHEAD));
    const sealed = encryptBlock(dataKey, plain);
    expect(sealed.length).toBe(plain.length + BLOCK_OVERHEAD);
    const { payload, compressed } = decryptBlock(dataKey, sealed);
    expect(compressed).toBe(false);
    expect(Buffer.from(payload).equals(Buffer.from(plain))).toBe(true);
    // Its own ArrayBuffer: the hash pool may transfer it without detaching anything else.
    expect(sealed.byteOffset).toBe(0);
    expect(sealed.byteLength).toBe(sealed.buffer.byteLength);
  });

  test("an empty block round-trips", () => {
    const { dataKey } = fresh();
    const sealed = encryptBlock(dataKey, new Uint8Array(0));
    expect(sealed.length).toBe(BLOCK_OVERHEAD);
    expect(decryptBlock(dataKey, sealed).payload.length).toBe(0);
  });

  test("the right customer key unlocks the record's data key; another key does not", () => {
    const { customerKey, record, dataKey } = fresh();
    const sealed = encryptBlock(dataKey, text(1000));
    const unlocked = unlockDataKey(record, customerKey);
    expect(unlocked).toBeDefined();
    expect(Buffer.from(decryptBlock(unlocked!, sealed).payload).equals(Buffer.from(text(1000)))).toBe(true);
    expect(unlockDataKey(record, key())).toBeUndefined();
    const flipped = new Uint8Array(customerKey);
    flipped[31]! ^= 1;
    expect(unlockDataKey(record, flipped)).toBeUndefined();
  });

  test("a wrong data key is a DecryptionError", () => {
    const a = fresh();
    const b = fresh();
    const sealed = encryptBlock(a.dataKey, text(4096));
    expect(() => decryptBlock(b.dataKey, sealed)).toThrow(DecryptionError);
  });

  test("two objects under one customer key have different data keys (a block of one does not open in the other)", () => {
    const customerKey = key();
    const one = newEncryptionRecord(customerKey);
    const two = newEncryptionRecord(customerKey);
    expect(one.record.salt).not.toBe(two.record.salt);
    expect(Buffer.from(one.dataKey).equals(Buffer.from(two.dataKey))).toBe(false);
    expect(() => decryptBlock(two.dataKey, encryptBlock(one.dataKey, text(100)))).toThrow(DecryptionError);
  });

  test("any tampered byte, a truncation or a too-short block is a DecryptionError", () => {
    const { dataKey } = fresh();
    const sealed = encryptBlock(dataKey, text(10_000));
    // format byte (0x01 -> 0x03 is unknown; 0x01 -> 0x02 is a valid format the AAD rejects), nonce, body, tag
    for (const [at, mask] of [[0, 2], [0, 3], [1, 1], [12, 0x80], [500, 1], [sealed.length - 17, 1], [sealed.length - 1, 1]] as const) {
      const bad = new Uint8Array(sealed);
      bad[at]! ^= mask;
      expect(() => decryptBlock(dataKey, bad)).toThrow(DecryptionError);
    }
    expect(() => decryptBlock(dataKey, sealed.subarray(0, sealed.length - 1))).toThrow(DecryptionError);
    expect(() => decryptBlock(dataKey, sealed.subarray(1))).toThrow(DecryptionError);
    expect(() => decryptBlock(dataKey, sealed.subarray(0, BLOCK_OVERHEAD - 1))).toThrow(DecryptionError);
  });

  test("a sealed block's name (BLAKE3 of what is stored) reveals nothing and never dedups", () => {
    const { dataKey } = fresh();
    const plain = text(64 * 1024);
    const first = hashHex(blake3Sync(encryptBlock(dataKey, plain)));
    const second = hashHex(blake3Sync(encryptBlock(dataKey, plain)));
    expect(first).not.toBe(second);
    expect(first).not.toBe(hashHex(blake3Sync(plain)));
  });

  test("a full encrypted block stays within the block size", async () => {
    const { dataKey } = fresh();
    const blockSize = MiB;
    const plain = new Uint8Array(crypto.randomBytes(encryptedBlockPlainSize(blockSize)));
    expect(encryptBlock(dataKey, plain).length).toBe(blockSize);
  });
});

describe("encryption record", () => {
  test("holds no form of the key: neither the key, its MD5, nor the data key", () => {
    const customerKey = key();
    const { record, dataKey } = newEncryptionRecord(customerKey);
    expect(Object.keys(record).sort()).toEqual(["alg", "keyMac", "salt"]);
    expect(record.alg).toBe(ENCRYPTION_ALG);
    const stored = JSON.stringify(record);
    const md5 = crypto.createHash("md5").update(customerKey).digest();
    for (const secret of [Buffer.from(customerKey), md5, Buffer.from(dataKey)]) {
      expect(stored).not.toContain(secret.toString("base64"));
      expect(stored).not.toContain(secret.toString("hex"));
      expect(stored).not.toContain(secret.toString("base64url"));
    }
    // The MAC is salted: the same key under another record has another MAC.
    expect(newEncryptionRecord(customerKey).record.keyMac).not.toBe(record.keyMac);
  });

  test("the key check compares MACs with timingSafeEqual, for a right and a wrong key", () => {
    const { customerKey, record } = fresh();
    const spy = spyOn(crypto, "timingSafeEqual");
    try {
      expect(unlockDataKey(record, customerKey)).toBeDefined();
      expect(spy).toHaveBeenCalledTimes(1);
      expect(unlockDataKey(record, key())).toBeUndefined();
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
    }
  });

  test("a record of an unknown format is refused, not misread", () => {
    const { customerKey, record } = fresh();
    const future = { ...record, alg: "AES256-GCM-v2" } as unknown as EncryptionRecord;
    expect(() => unlockDataKey(future, customerKey)).toThrow(UnsupportedEncryptionError);
  });

  test("a copy under the source's key shares its record (and so its blocks); under another key it gets a fresh one", () => {
    const { customerKey, record, dataKey } = fresh();
    const sealed = encryptBlock(dataKey, text(2000));
    const same = recordForCopy(customerKey, record);
    expect(same.shared).toBe(true);
    expect(same.record).toEqual(record);
    expect(Buffer.from(decryptBlock(same.dataKey, sealed).payload).equals(Buffer.from(text(2000)))).toBe(true);
    const other = recordForCopy(key(), record);
    expect(other.shared).toBe(false);
    expect(other.record.salt).not.toBe(record.salt);
    expect(() => decryptBlock(other.dataKey, sealed)).toThrow(DecryptionError);
    const fromPlain = recordForCopy(customerKey, undefined);
    expect(fromPlain.shared).toBe(false);
    expect(unlockDataKey(fromPlain.record, customerKey)).toBeDefined();
  });
});
