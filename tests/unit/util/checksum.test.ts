// Streaming checksums: published check values, chunking independence, and
// agreement with the AWS SDK's own implementations.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Crc32, Crc32cJs, Crc64NvmeJs } from "@aws-sdk/checksums/crc";
import {
  CHECKSUM_ALGORITHMS,
  CHECKSUM_DIGEST_LENGTH,
  checkChecksumType,
  checksumHeaderName,
  createChecksum,
  defaultChecksumType,
  FULL_OBJECT_ALGORITHMS,
  isFullObjectAlgorithm,
  parseChecksumAlgorithm,
  toBase64,
  type ChecksumAlgorithm,
} from "../../../src/util/checksum.ts";

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function digestOf(algo: ChecksumAlgorithm, ...pieces: Uint8Array[]): Uint8Array {
  const c = createChecksum(algo);
  for (const p of pieces) c.update(p);
  return c.digest();
}

/** Deterministic pseudo-random bytes (xorshift32). */
function noise(n: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe("check values of \"123456789\"", () => {
  const input = enc.encode("123456789");
  test.each([
    ["CRC32", "cbf43926"],
    ["CRC32C", "e3069283"],
    ["CRC64NVME", "ae8b14860a799888"],
    ["SHA1", "f7c3bc1d808e04732adf679965ccc34ca7ae3441"],
    ["SHA256", "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"],
  ] as const)("%s", (algo, expected) => {
    expect(hex(digestOf(algo, input))).toBe(expected);
    expect(digestOf(algo, input).length).toBe(CHECKSUM_DIGEST_LENGTH[algo]);
  });
});

test("empty input", () => {
  expect(hex(digestOf("CRC32"))).toBe("00000000");
  expect(hex(digestOf("CRC32C"))).toBe("00000000");
  expect(hex(digestOf("CRC64NVME"))).toBe("0000000000000000");
  expect(hex(digestOf("SHA256"))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
});

test("S3 documentation values: 66560 'a' bytes hash to the CRC32C trailer of the SigV4 streaming example", () => {
  // From "Signature calculations for trailing headers": x-amz-checksum-crc32c:sOO8/Q==
  const data = new Uint8Array(66560).fill(0x61);
  expect(toBase64(digestOf("CRC32C", data))).toBe("sOO8/Q==");
});

describe("the result does not depend on how the input is split", () => {
  const data = noise(100_003);
  for (const algo of CHECKSUM_ALGORITHMS) {
    test(algo, () => {
      const whole = hex(digestOf(algo, data));
      // Every split size from 1 to 17 covers all alignments of the 8-byte fast path.
      for (let step = 1; step <= 17; step++) {
        const c = createChecksum(algo);
        for (let o = 0; o < 4096; o += step) c.update(data.subarray(o, Math.min(o + step, 4096)));
        c.update(data.subarray(4096));
        expect(hex(c.digest())).toBe(whole);
      }
      // Subarrays with odd byte offsets, and empty updates.
      const c = createChecksum(algo);
      c.update(new Uint8Array(0));
      let o = 0;
      for (const size of [1, 3, 7, 8, 9, 63, 64, 65, 1000, 65536]) {
        c.update(data.subarray(o, o + size));
        o += size;
      }
      c.update(data.subarray(o));
      expect(hex(c.digest())).toBe(whole);
    });
  }
});

describe("agreement with the AWS SDK implementations", () => {
  const sizes = [0, 1, 7, 8, 9, 255, 4096, 65537, 1 << 20];
  test.each(sizes)("%d bytes", async (n) => {
    const data = noise(n, n + 1);
    const sdk = async (C: new () => { update(d: Uint8Array): void; digest(): Promise<Uint8Array> }) => {
      const h = new C();
      h.update(data);
      return hex(await h.digest());
    };
    expect(hex(digestOf("CRC32", data))).toBe(await sdk(Crc32 as never));
    expect(hex(digestOf("CRC32C", data))).toBe(await sdk(Crc32cJs as never));
    expect(hex(digestOf("CRC64NVME", data))).toBe(await sdk(Crc64NvmeJs as never));
    expect(hex(digestOf("SHA1", data))).toBe(createHash("sha1").update(data).digest("hex"));
    expect(hex(digestOf("SHA256", data))).toBe(createHash("sha256").update(data).digest("hex"));
  });
});

test("names and headers", () => {
  expect(parseChecksumAlgorithm("crc32c")).toBe("CRC32C");
  expect(parseChecksumAlgorithm("CRC64NVME")).toBe("CRC64NVME");
  expect(parseChecksumAlgorithm("Sha256")).toBe("SHA256");
  expect(parseChecksumAlgorithm("md5")).toBeUndefined();
  expect(parseChecksumAlgorithm("")).toBeUndefined();
  expect(checksumHeaderName("CRC64NVME")).toBe("x-amz-checksum-crc64nvme");
  expect(checksumHeaderName("SHA1")).toBe("x-amz-checksum-sha1");
  expect(toBase64(new Uint8Array([0xcb, 0xf4, 0x39, 0x26]))).toBe("y/Q5Jg==");
  expect(toBase64(new Uint8Array([9, 0xcb, 0xf4, 0x39, 0x26]).subarray(1))).toBe("y/Q5Jg==");
});

describe("multipart checksum types (S3 User Guide, \"Checking object integrity\")", () => {
  // Algorithm: [full object allowed, composite allowed, default].
  const table = {
    CRC64NVME: [true, false, "FULL_OBJECT"],
    CRC32: [true, true, "COMPOSITE"],
    CRC32C: [true, true, "COMPOSITE"],
    SHA1: [false, true, "COMPOSITE"],
    SHA256: [false, true, "COMPOSITE"],
  } as const;

  test("FULL_OBJECT is for the CRCs only", () => {
    expect([...FULL_OBJECT_ALGORITHMS]).toEqual(["CRC32", "CRC32C", "CRC64NVME"]);
    for (const algo of CHECKSUM_ALGORITHMS) expect(isFullObjectAlgorithm(algo)).toBe(table[algo][0]);
  });

  test.each(CHECKSUM_ALGORITHMS)("%s: allowed types and default", (algo) => {
    const [full, composite, dflt] = table[algo];
    const lower = algo.toLowerCase();
    expect(checkChecksumType(algo, "FULL_OBJECT")).toBe(full ? undefined : `The FULL_OBJECT checksum type cannot be used with the ${lower} checksum algorithm.`);
    expect(checkChecksumType(algo, "COMPOSITE")).toBe(composite ? undefined : `The COMPOSITE checksum type cannot be used with the ${lower} checksum algorithm.`);
    expect(defaultChecksumType(algo)).toBe(dflt);
    expect(checkChecksumType(algo, defaultChecksumType(algo))).toBeUndefined();
  });
});
