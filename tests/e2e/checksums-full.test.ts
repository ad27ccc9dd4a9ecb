// Multipart checksums end to end, with @aws-sdk/client-s3 and lib-storage at their default
// settings (requestChecksumCalculation and responseChecksumValidation WHEN_SUPPORTED): every
// algorithm with each checksum type S3 allows (FULL_OBJECT CRCs combined from the parts'),
// GetObject whose full-object checksum the SDK itself verifies while reading, partNumber GETs
// answering the part's checksum, ListParts, and CompleteMultipartUpload's checks of what the
// client declares (per part and for the object) with AWS's errors. Then boto3, if installed.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type ChecksumAlgorithm,
  type ChecksumType,
  type CompletedPart,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { startServer, type TestServer } from "../helpers/server";
import { crc32c, crcBase64, MiB, run, s3Failure, sdkClient } from "../helpers/clients";

// A real server and real clients: bun's 5 s default is too short.
setDefaultTimeout(60_000);

const BUCKET = "sums";
let server: TestServer;
let s3: S3Client;
/** Two parts: S3's smallest non-last part, and a short last one. */
const PARTS = [randomBytes(5 * MiB), randomBytes(3001)];
const BODY = Buffer.concat(PARTS);

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});
afterAll(async () => {
  await server?.stop();
});

/** The digest of `data` as S3 writes it, for the algorithms computed here independently of Bunker. */
function digest(algo: ChecksumAlgorithm, data: Uint8Array): Buffer {
  switch (algo) {
    case "CRC32":
      return Buffer.from(crcBase64(Bun.hash.crc32(data)), "base64");
    case "CRC32C":
      return Buffer.from(crcBase64(crc32c(data)), "base64");
    case "SHA1":
      return createHash("sha1").update(data).digest();
    case "SHA256":
      return createHash("sha256").update(data).digest();
    default:
      throw new Error(`no independent ${algo} here`);
  }
}

/** The object checksum S3 gives these parts, when it can be computed here (not CRC64NVME). */
function expectedObjectChecksum(algo: ChecksumAlgorithm, type: ChecksumType, parts: Uint8Array[]): string | undefined {
  if (algo === "CRC64NVME") return undefined;
  if (type === "FULL_OBJECT") return digest(algo, Buffer.concat(parts)).toString("base64");
  return `${digest(algo, Buffer.concat(parts.map((p) => digest(algo, p)))).toString("base64")}-${parts.length}`;
}

const field = (algo: ChecksumAlgorithm) => `Checksum${algo}` as const;

/** Every algorithm with each type S3 allows, and the default type (undefined). */
const COMBINATIONS: [ChecksumAlgorithm, ChecksumType | undefined, ChecksumType][] = [
  ["CRC32", undefined, "COMPOSITE"],
  ["CRC32", "FULL_OBJECT", "FULL_OBJECT"],
  ["CRC32C", "COMPOSITE", "COMPOSITE"],
  ["CRC32C", "FULL_OBJECT", "FULL_OBJECT"],
  ["CRC64NVME", undefined, "FULL_OBJECT"],
  ["SHA1", undefined, "COMPOSITE"],
  ["SHA256", "COMPOSITE", "COMPOSITE"],
];

/** GetObject at the SDK's defaults (ChecksumMode ENABLED): the SDK verifies a full-object checksum as it reads. */
async function getVerified(key: string, partNumber?: number) {
  const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, PartNumber: partNumber }));
  return { got, bytes: Buffer.from(await got.Body!.transformToByteArray()) };
}

describe("lib-storage Upload at the SDK's defaults", () => {
  test("no checksum option: CRC32 COMPOSITE (lib-storage's default); GET verifies each part's CRC32", async () => {
    const done = await new Upload({ client: s3, params: { Bucket: BUCKET, Key: "default", Body: BODY }, partSize: 5 * MiB }).done();
    expect(done.ChecksumCRC32).toBe(expectedObjectChecksum("CRC32", "COMPOSITE", PARTS)!);
    expect(done.ChecksumType).toBe("COMPOSITE");
    const { got, bytes } = await getVerified("default");
    expect(bytes.equals(BODY)).toBe(true);
    expect({ value: got.ChecksumCRC32, type: got.ChecksumType }).toEqual({ value: done.ChecksumCRC32, type: "COMPOSITE" });
    // A part's checksum is a plain CRC32 of its bytes: the SDK verifies it.
    for (const n of [1, 2]) {
      const part = await getVerified("default", n);
      expect(part.bytes.equals(PARTS[n - 1]!)).toBe(true);
      expect(part.got.ChecksumCRC32).toBe(digest("CRC32", PARTS[n - 1]!).toString("base64"));
    }
  });

  for (const [algo, requested, type] of COMBINATIONS) {
    test(`${algo} ${requested ?? "(default type)"} → ${type}; GetObject verified by the SDK`, async () => {
      const key = `lib-${algo}-${requested ?? "default"}`;
      const done = await new Upload({
        client: s3,
        params: { Bucket: BUCKET, Key: key, Body: BODY, ChecksumAlgorithm: algo, ...(requested ? { ChecksumType: requested } : {}) },
        partSize: 5 * MiB,
      }).done();
      expect(done.ChecksumType).toBe(type);
      const value = done[field(algo)]!;
      const expected = expectedObjectChecksum(algo, type, PARTS);
      if (expected !== undefined) expect(value).toBe(expected);
      // FULL_OBJECT has no part count; COMPOSITE has it.
      expect(/-2$/.test(value)).toBe(type === "COMPOSITE");

      const { got, bytes } = await getVerified(key);
      expect(bytes.equals(BODY)).toBe(true);
      expect({ value: got[field(algo)], type: got.ChecksumType }).toEqual({ value, type });
      const part2 = await getVerified(key, 2);
      expect(part2.bytes.equals(PARTS[1]!)).toBe(true);
      expect(part2.got.ChecksumType).toBe(type);
      if (algo !== "CRC64NVME") expect(part2.got[field(algo)]).toBe(digest(algo, PARTS[1]!).toString("base64"));
      else expect(part2.got.ChecksumCRC64NVME).toMatch(/^[A-Za-z0-9+/]{11}=$/);
    });
  }
});

describe("the checksum type at GET and HEAD", () => {
  test("a PutObject's checksum is FULL_OBJECT; without x-amz-checksum-mode there is none", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "single", Body: PARTS[1], ChecksumAlgorithm: "CRC32C" }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "single", ChecksumMode: "ENABLED" }));
    expect({ value: head.ChecksumCRC32C, type: head.ChecksumType }).toEqual({ value: digest("CRC32C", PARTS[1]!).toString("base64"), type: "FULL_OBJECT" });
    const plain = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "single" }));
    expect({ value: plain.ChecksumCRC32C, type: plain.ChecksumType }).toEqual({ value: undefined, type: undefined });
    const part1 = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "single", PartNumber: 1, ChecksumMode: "ENABLED" }));
    expect(part1.ChecksumCRC32C).toBe(head.ChecksumCRC32C);
  });

  test("a Range has no checksum (S3 keeps none of a range)", async () => {
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "single", Range: "bytes=0-9", ChecksumMode: "ENABLED" }));
    expect(got.ChecksumCRC32C).toBeUndefined();
    expect((await got.Body!.transformToByteArray()).length).toBe(10);
  });
});

/** A raw multipart upload of PARTS with `algo` and `type`, its parts' checksums sent by the SDK. */
async function uploadParts(key: string, algo: ChecksumAlgorithm, type?: ChecksumType) {
  const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: algo, ChecksumType: type }));
  const parts: CompletedPart[] = [];
  for (const [i, body] of PARTS.entries()) {
    const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: i + 1, Body: body, ChecksumAlgorithm: algo }));
    parts.push({ PartNumber: i + 1, ETag: r.ETag, [field(algo)]: r[field(algo)] });
  }
  return { created, uploadId: created.UploadId!, parts };
}

const complete = (key: string, uploadId: string, parts: CompletedPart[], extra: Partial<ConstructorParameters<typeof CompleteMultipartUploadCommand>[0]> = {}) =>
  s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...extra }));

const failureOf = async (p: Promise<unknown>) => {
  const f = await s3Failure(p);
  return `${f.status} ${f.name}: ${f.message}`;
};

describe("CreateMultipartUpload", () => {
  test("answers the algorithm and its type; refuses the pairs S3 refuses, and a type without an algorithm", async () => {
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "c", ChecksumAlgorithm: "CRC64NVME" }));
    expect({ algorithm: created.ChecksumAlgorithm, type: created.ChecksumType }).toEqual({ algorithm: "CRC64NVME", type: "FULL_OBJECT" });
    expect(await failureOf(s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "c", ChecksumAlgorithm: "SHA1", ChecksumType: "FULL_OBJECT" })))).toBe(
      "400 InvalidRequest: The FULL_OBJECT checksum type cannot be used with the sha1 checksum algorithm.",
    );
    expect(await failureOf(s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "c", ChecksumAlgorithm: "CRC64NVME", ChecksumType: "COMPOSITE" })))).toBe(
      "400 InvalidRequest: The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.",
    );
    expect(await failureOf(s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "c", ChecksumType: "FULL_OBJECT" })))).toBe(
      "400 InvalidRequest: The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
    );
    expect(await failureOf(s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "c", ChecksumAlgorithm: "CRC32", ChecksumType: "WHOLE" as ChecksumType })))).toBe(
      "400 InvalidRequest: Value for x-amz-checksum-type header is invalid.",
    );
  });
});

describe("UploadPart and ListParts", () => {
  test("a part checksum of another algorithm than the upload's is refused", async () => {
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mismatch", ChecksumAlgorithm: "CRC32C", ChecksumType: "FULL_OBJECT" }));
    const sent = s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mismatch", UploadId: created.UploadId, PartNumber: 1, Body: PARTS[1], ChecksumAlgorithm: "SHA256" }));
    expect(await failureOf(sent)).toBe("400 InvalidRequest: Checksum Type mismatch occurred, expected checksum Type: crc32c, actual checksum Type: sha256");
  });

  test("ListParts answers the checksum type and each part's checksum", async () => {
    const { uploadId, parts } = await uploadParts("listed", "CRC32", "FULL_OBJECT");
    const listed = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: "listed", UploadId: uploadId }));
    expect({ algorithm: listed.ChecksumAlgorithm, type: listed.ChecksumType }).toEqual({ algorithm: "CRC32", type: "FULL_OBJECT" });
    expect(listed.Parts?.map((p) => p.ChecksumCRC32)).toEqual(parts.map((p) => p.ChecksumCRC32));
    expect(listed.Parts?.map((p) => p.ChecksumCRC32)).toEqual(PARTS.map((p) => digest("CRC32", p).toString("base64")));
  });
});

describe("CompleteMultipartUpload checks what the client declares", () => {
  test("a <Part> checksum that is not the part's: 400 InvalidPart; the upload stays open", async () => {
    const { uploadId, parts } = await uploadParts("wrong-part", "SHA256");
    const wrong = [{ ...parts[0]!, ChecksumSHA256: digest("SHA256", Buffer.from("other")).toString("base64") }, parts[1]!];
    expect(await failureOf(complete("wrong-part", uploadId, wrong))).toMatch(/^400 InvalidPart: /);
    expect((await failureOf(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "wrong-part" })))).startsWith("404")).toBe(true);
    const done = await complete("wrong-part", uploadId, parts);
    expect(done.ChecksumSHA256).toBe(expectedObjectChecksum("SHA256", "COMPOSITE", PARTS)!);
  });

  test("a Complete may leave out the parts' checksums (the stored ones are used), COMPOSITE or FULL_OBJECT; a wrong object checksum is BadDigest", async () => {
    const composite = await uploadParts("missing", "CRC32C");
    const bare = composite.parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag }));
    const one = await complete("missing", composite.uploadId, [composite.parts[0]!, bare[1]!]);
    expect(one.ChecksumCRC32C).toBe(expectedObjectChecksum("CRC32C", "COMPOSITE", PARTS)!);
    const full = await uploadParts("bare-full", "CRC32C", "FULL_OBJECT");
    const done = await complete("bare-full", full.uploadId, full.parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })));
    expect(done.ChecksumCRC32C).toBe(expectedObjectChecksum("CRC32C", "FULL_OBJECT", PARTS)!);
    // s3-tests test_multipart_checksum_sha256: no part checksums, a wrong object checksum.
    const sha = await uploadParts("bad-object-sum", "SHA256");
    const bad = s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "bad-object-sum", UploadId: sha.uploadId, ChecksumSHA256: "bad", MultipartUpload: { Parts: sha.parts.map(({ PartNumber, ETag }) => ({ PartNumber, ETag })) } }));
    expect(await failureOf(bad)).toStartWith("400 BadDigest");
  });

  test("a <Part> checksum of another algorithm: 400 BadDigest", async () => {
    const { uploadId, parts } = await uploadParts("other-algo", "CRC32", "FULL_OBJECT");
    const other = [{ PartNumber: 1, ETag: parts[0]!.ETag, ChecksumSHA256: digest("SHA256", PARTS[0]!).toString("base64") }, parts[1]!];
    expect(await failureOf(complete("other-algo", uploadId, other))).toBe("400 BadDigest: The sha256 you specified for part 1 did not match what we received.");
  });

  test("the whole object's CRC declared by the client: checked (BadDigest), then the object completes", async () => {
    const { uploadId, parts } = await uploadParts("declared", "CRC32", "FULL_OBJECT");
    const whole = expectedObjectChecksum("CRC32", "FULL_OBJECT", PARTS)!;
    const wrong = digest("CRC32", Buffer.from("not the object")).toString("base64");
    expect(await failureOf(complete("declared", uploadId, parts, { ChecksumCRC32: wrong, ChecksumType: "FULL_OBJECT" }))).toMatch(/^400 BadDigest: /);
    const done = await complete("declared", uploadId, parts, { ChecksumCRC32: whole, ChecksumType: "FULL_OBJECT" });
    expect({ value: done.ChecksumCRC32, type: done.ChecksumType }).toEqual({ value: whole, type: "FULL_OBJECT" });
  });

  test("x-amz-checksum-type other than the upload's: 400 BadDigest", async () => {
    const { uploadId, parts } = await uploadParts("type-mismatch", "CRC32", "FULL_OBJECT");
    expect(await failureOf(complete("type-mismatch", uploadId, parts, { ChecksumType: "COMPOSITE" }))).toBe(
      "400 BadDigest: The upload was created using the FULL_OBJECT checksum mode. The complete request must use the same checksum mode.",
    );
  });

  test("with part checksums, part numbers start at 1 and are consecutive: 400 InvalidPartOrder", async () => {
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "gap", ChecksumAlgorithm: "CRC32" }));
    const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "gap", UploadId: created.UploadId, PartNumber: 2, Body: PARTS[1], ChecksumAlgorithm: "CRC32" }));
    expect(await failureOf(complete("gap", created.UploadId!, [{ PartNumber: 2, ETag: r.ETag, ChecksumCRC32: r.ChecksumCRC32 }]))).toMatch(/^400 InvalidPartOrder: /);
  });
});

describe("other paths into an upload", () => {
  test("an upload created without an algorithm, parts sent at the SDK's defaults (CRC32): Complete checks the parts' CRC32 it names", async () => {
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "no-algo" }));
    expect(created.ChecksumAlgorithm).toBeUndefined();
    const parts: CompletedPart[] = [];
    for (const [i, body] of PARTS.entries()) {
      const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "no-algo", UploadId: created.UploadId, PartNumber: i + 1, Body: body }));
      expect(r.ChecksumCRC32).toBe(digest("CRC32", body).toString("base64"));
      parts.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumCRC32: r.ChecksumCRC32 });
    }
    const wrong = [{ ...parts[0]!, ChecksumCRC32: digest("CRC32", Buffer.from("x")).toString("base64") }, parts[1]!];
    expect(await failureOf(complete("no-algo", created.UploadId!, wrong))).toMatch(/^400 InvalidPart: /);
    const done = await complete("no-algo", created.UploadId!, parts);
    expect({ crc: done.ChecksumCRC32, type: done.ChecksumType }).toEqual({ crc: undefined, type: undefined });
    const { got, bytes } = await getVerified("no-algo");
    expect({ same: bytes.equals(BODY), crc: got.ChecksumCRC32 }).toEqual({ same: true, crc: undefined });
  });

  test("UploadPartCopy into a FULL_OBJECT CRC32C upload: the copied part's CRC joins the combination", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "copy-src", Body: PARTS[0] }));
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "copied", ChecksumAlgorithm: "CRC32C", ChecksumType: "FULL_OBJECT" }));
    const copied = await s3.send(new UploadPartCopyCommand({ Bucket: BUCKET, Key: "copied", UploadId: created.UploadId, PartNumber: 1, CopySource: `${BUCKET}/copy-src` }));
    const sent = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "copied", UploadId: created.UploadId, PartNumber: 2, Body: PARTS[1], ChecksumAlgorithm: "CRC32C" }));
    const done = await complete("copied", created.UploadId!, [
      { PartNumber: 1, ETag: copied.CopyPartResult!.ETag },
      { PartNumber: 2, ETag: sent.ETag, ChecksumCRC32C: sent.ChecksumCRC32C },
    ]);
    expect(done.ChecksumCRC32C).toBe(expectedObjectChecksum("CRC32C", "FULL_OBJECT", PARTS)!);
    const { got, bytes } = await getVerified("copied");
    expect({ same: bytes.equals(BODY), crc: got.ChecksumCRC32C }).toEqual({ same: true, crc: done.ChecksumCRC32C });
  });
});

describe("boto3 at its default checksum settings", () => {
  test("upload_file (multipart) and download_file; a FULL_OBJECT CRC32 upload verified by botocore on get_object", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bunker-boto3-"));
    try {
      writeFileSync(join(dir, "up.bin"), BODY);
      const script = `
import sys
try:
    import boto3
    from boto3.s3.transfer import TransferConfig
except ImportError:
    print("NO_BOTO3")
    sys.exit(0)
endpoint, key_id, secret, region, bucket, src, dst = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region)
cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
s3.upload_file(src, bucket, "boto3-file", Config=cfg)
head = s3.head_object(Bucket=bucket, Key="boto3-file", ChecksumMode="ENABLED")
print("parts", head["ETag"].strip('"').split("-")[1], head.get("ChecksumType"), "CRC32" if head.get("ChecksumCRC32") else "none")
s3.download_file(bucket, "boto3-file", dst, Config=cfg)
print("download", open(src, "rb").read() == open(dst, "rb").read())
data = open(src, "rb").read()
parts = [data[:5 * 1024 * 1024], data[5 * 1024 * 1024:]]
mp = s3.create_multipart_upload(Bucket=bucket, Key="boto3-full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
done = []
for i, p in enumerate(parts):
    r = s3.upload_part(Bucket=bucket, Key="boto3-full", UploadId=mp["UploadId"], PartNumber=i + 1, Body=p, ChecksumAlgorithm="CRC32")
    done.append({"PartNumber": i + 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
c = s3.complete_multipart_upload(Bucket=bucket, Key="boto3-full", UploadId=mp["UploadId"], MultipartUpload={"Parts": done})
got = s3.get_object(Bucket=bucket, Key="boto3-full")
body = got["Body"].read()
print("full", c["ChecksumType"], c["ChecksumCRC32"] == got.get("ChecksumCRC32"), body == data)
`;
      writeFileSync(join(dir, "boto3_check.py"), script);
      const r = await run(
        ["python3", join(dir, "boto3_check.py"), server.endpoint, server.accessKeyId, server.secretAccessKey, server.region, BUCKET, join(dir, "up.bin"), join(dir, "down.bin")],
        { timeoutMs: 60_000 },
      );
      if (r.stdout.trim() === "NO_BOTO3") {
        console.warn("SKIP boto3 checks: python3 cannot import boto3 (install python3-boto3)");
        return;
      }
      expect(r.stderr).not.toContain("Traceback");
      expect(r.stdout.trim().split("\n")).toEqual(["parts 2 COMPOSITE CRC32", "download True", "full FULL_OBJECT True True"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
