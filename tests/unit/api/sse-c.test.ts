import { describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { decryptBlock, encryptBlock, newEncryptionRecord, type EncryptionRecord } from "../../../src/block/encryption.ts";
import { S3Error } from "../../../src/api/s3/errors.ts";
import {
  SSE_C_COPY_SOURCE_PREFIX,
  SSE_C_PREFIX,
  encryptedOnWebsite,
  parseSseC,
  bodyEtag,
  sseCResponseHeaders,
  unlockSseC,
  type SseCKey,
} from "../../../src/api/s3/sse-c.ts";

const KEY = randomBytes(32);
const KEY_B64 = KEY.toString("base64");
const MD5_B64 = createHash("md5").update(KEY).digest("base64");

function headers(fields: Record<string, string | undefined>, prefix = SSE_C_PREFIX): Headers {
  const h = new Headers();
  for (const [suffix, value] of Object.entries(fields)) if (value !== undefined) h.set(prefix + suffix, value);
  return h;
}
const full = (over: Record<string, string | undefined> = {}, prefix = SSE_C_PREFIX) =>
  headers({ algorithm: "AES256", key: KEY_B64, "key-md5": MD5_B64, ...over }, prefix);

/** "status code: message" of what `fn` throws, which must be an S3Error. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(S3Error);
    const e = err as S3Error;
    return `${e.status} ${e.code}: ${e.message}`;
  }
  throw new Error("expected a refusal");
}

describe("parseSseC", () => {
  test("no header of the set: no key", () => {
    expect(parseSseC(new Headers({ "x-amz-server-side-encryption": "AES256" }))).toBeUndefined();
    // The copy-source set does not key the destination, nor the reverse.
    expect(parseSseC(full({}, SSE_C_COPY_SOURCE_PREFIX))).toBeUndefined();
    expect(parseSseC(full(), SSE_C_COPY_SOURCE_PREFIX)).toBeUndefined();
  });

  test("a full set gives the key and its MD5, from headers of any case or from form fields", () => {
    const got = parseSseC(new Headers({
      "X-Amz-Server-Side-Encryption-Customer-Algorithm": "AES256",
      "X-Amz-Server-Side-Encryption-Customer-Key": KEY_B64,
      "X-Amz-Server-Side-Encryption-Customer-Key-MD5": MD5_B64,
    }));
    expect(Buffer.from(got!.key).equals(KEY)).toBe(true);
    expect(got!.keyMd5).toBe(MD5_B64);
    const source = parseSseC(full({}, SSE_C_COPY_SOURCE_PREFIX), SSE_C_COPY_SOURCE_PREFIX);
    expect(Buffer.from(source!.key).equals(KEY)).toBe(true);
    const form = new Map([
      ["x-amz-server-side-encryption-customer-algorithm", "AES256"],
      ["x-amz-server-side-encryption-customer-key", KEY_B64],
      ["x-amz-server-side-encryption-customer-key-md5", MD5_B64],
    ]);
    expect(Buffer.from(parseSseC(form)!.key).equals(KEY)).toBe(true);
  });

  test("partial sets are refused with AWS's InvalidArgument, key first, then MD5, then algorithm", () => {
    const S = "400 InvalidArgument: Requests specifying Server Side Encryption with Customer provided keys must provide";
    expect(refusal(() => parseSseC(full({ key: undefined })))).toBe(`${S} an appropriate secret key.`);
    expect(refusal(() => parseSseC(headers({ algorithm: "AES256" })))).toBe(`${S} an appropriate secret key.`);
    expect(refusal(() => parseSseC(full({ "key-md5": undefined })))).toBe(`${S} the client calculated MD5 of the secret key.`);
    expect(refusal(() => parseSseC(full({ algorithm: undefined })))).toBe(`${S} a valid encryption algorithm.`);
    expect(refusal(() => parseSseC(full({ algorithm: undefined }, SSE_C_COPY_SOURCE_PREFIX), SSE_C_COPY_SOURCE_PREFIX))).toBe(`${S} a valid encryption algorithm.`);
  });

  test("another algorithm is InvalidEncryptionAlgorithmError", () => {
    for (const algorithm of ["AES128", "aes256", "aws:kms", ""]) {
      expect(refusal(() => parseSseC(full({ algorithm })))).toBe(
        "400 InvalidEncryptionAlgorithmError: The encryption request that you specified is not valid. The valid value is AES256.",
      );
    }
  });

  test("a key that is not 32 bytes of base64 is InvalidArgument", () => {
    const short = randomBytes(16);
    const cases = [
      { key: short.toString("base64"), "key-md5": createHash("md5").update(short).digest("base64") },
      { key: randomBytes(33).toString("base64") },
      { key: KEY.toString("hex") },
      { key: `${KEY_B64.slice(0, -2)}!!` },
    ];
    for (const c of cases) expect(refusal(() => parseSseC(full(c)))).toStartWith("400 InvalidArgument: The secret key was invalid for the specified algorithm");
  });

  test("an MD5 that does not match the key is InvalidArgument with AWS's message", () => {
    const message = "400 InvalidArgument: The calculated MD5 hash of the key did not match the hash that was provided.";
    const wrong = [
      createHash("md5").update(randomBytes(32)).digest("base64"),
      createHash("md5").update(KEY_B64).digest("base64"), // the MD5 of the base64 text: a common client mistake
      createHash("md5").update(KEY).digest("hex"),
      "",
    ];
    for (const md5 of wrong) expect(refusal(() => parseSseC(full({ "key-md5": md5 })))).toBe(message);
  });

  test("no refusal repeats the key", () => {
    for (const over of [{ algorithm: "AES128" }, { "key-md5": "x" }, { algorithm: undefined }, { key: `${KEY_B64}AA` }]) {
      expect(refusal(() => parseSseC(full(over)))).not.toContain(KEY_B64.slice(0, 20));
    }
  });
});

describe("sseCResponseHeaders", () => {
  test("echoes the algorithm and the key MD5", () => {
    expect(sseCResponseHeaders(MD5_B64)).toEqual({
      "x-amz-server-side-encryption-customer-algorithm": "AES256",
      "x-amz-server-side-encryption-customer-key-md5": MD5_B64,
    });
  });
});

describe("unlockSseC", () => {
  const given: SseCKey = { key: new Uint8Array(KEY), keyMd5: MD5_B64 };
  const other: SseCKey = { key: new Uint8Array(randomBytes(32)), keyMd5: "unused" };
  const { record, dataKey } = newEncryptionRecord(new Uint8Array(KEY));

  test("plaintext object, no key: nothing to unlock", () => {
    expect(unlockSseC(undefined, undefined, "read")).toBeUndefined();
    expect(unlockSseC(undefined, undefined, "upload")).toBeUndefined();
  });

  test("the right key gives the data key of the object's blocks", () => {
    const sealed = encryptBlock(dataKey, new TextEncoder().encode("hello"));
    for (const use of ["read", "upload"] as const) {
      const unlocked = unlockSseC(record, given, use)!;
      expect(new TextDecoder().decode(decryptBlock(unlocked, sealed).payload)).toBe("hello");
    }
  });

  test("a key for a plaintext object or upload is 400 InvalidRequest", () => {
    for (const use of ["read", "upload"] as const) {
      expect(refusal(() => unlockSseC(undefined, given, use))).toBe("400 InvalidRequest: The encryption parameters are not applicable to this object.");
    }
  });

  test("no key for an encrypted object is 400 InvalidRequest; for an encrypted upload's part too", () => {
    expect(refusal(() => unlockSseC(record, undefined, "read"))).toBe(
      "400 InvalidRequest: The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
    );
    expect(refusal(() => unlockSseC(record, undefined, "upload"))).toBe(
      "400 InvalidRequest: The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.",
    );
  });

  test("a wrong key is 403 AccessDenied on an object, 400 InvalidArgument on an upload's part", () => {
    expect(refusal(() => unlockSseC(record, other, "read"))).toBe("403 AccessDenied: Access Denied");
    expect(refusal(() => unlockSseC(record, other, "upload"))).toBe("400 InvalidArgument: The provided encryption parameters did not match the ones used originally.");
  });

  test("a record from a newer Bunker is 501, not a wrong key", () => {
    const future = { ...record, alg: "AES256-GCM-v9" } as unknown as EncryptionRecord;
    expect(refusal(() => unlockSseC(future, given, "read"))).toStartWith("501 NotImplemented:");
  });
});

describe("SSE-C response values", () => {
  test("an SSE-C ETag is a MAC of the MD5 under the data key: not the MD5, the same for the same bytes and key, another under another key", () => {
    const md5 = createHash("md5").update("some bytes").digest();
    expect(bodyEtag(md5, undefined)).toBe(md5.toString("hex"));
    const one = newEncryptionRecord(new Uint8Array(randomBytes(32))).dataKey;
    const other = newEncryptionRecord(new Uint8Array(randomBytes(32))).dataKey;
    const a = bodyEtag(md5, one);
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(a).not.toBe(md5.toString("hex"));
    expect(bodyEtag(md5, one)).toBe(a);
    expect(bodyEtag(md5, other)).not.toBe(a);
  });

  test("the web endpoint refuses encrypted objects with 403", () => {
    const e = encryptedOnWebsite();
    expect([e.status, e.code]).toEqual([403, "AccessDenied"]);
  });
});
