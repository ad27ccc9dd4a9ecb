// "Never 200 but something else": what Bunker does not do is refused with the error AWS gives,
// and a refused request stores, deletes and creates nothing. SSE-C and SSE-S3/KMS, tags,
// object lock, ACLs, storage classes, bucket-owner checks, sub-resources (PUT ?versioning
// never creates a bucket), version ids other than "null" (never served or deleted instead of
// the object), conditional deletes, and a 500 logged with its request id. Real server, SDK and
// signed raw requests (docs/s3-compatibility.md has the whole table).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import {
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { s3Failure, sdkClient } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

setDefaultTimeout(60_000);

const BUCKET = "refusals";
let server: TestServer;
let s3: S3Client;

/** A 32-byte SSE-C key with its base64 MD5, as a client sends it. */
const SSE_C_KEY = randomBytes(32);
const SSE_C_HEADERS = {
  "x-amz-server-side-encryption-customer-algorithm": "AES256",
  "x-amz-server-side-encryption-customer-key": SSE_C_KEY.toString("base64"),
  "x-amz-server-side-encryption-customer-key-md5": createHash("md5").update(SSE_C_KEY).digest("base64"),
};
const COPY_SOURCE_SSE_C_HEADERS = Object.fromEntries(Object.entries(SSE_C_HEADERS).map(([k, v]) => [k.replace("x-amz-", "x-amz-copy-source-"), v]));

async function exists(key: string, bucket = BUCKET): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

async function bucketExists(name: string): Promise<boolean> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: name }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

async function body(key: string): Promise<string> {
  return (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
}

/** Status and error code of a signed raw request. */
async function answer(method: string, target: string, headers: Record<string, string> = {}, requestBody?: string): Promise<{ status: number; code: string; text: string; headers: Headers }> {
  const r = await signedFetch(server, method, target, { headers, body: requestBody });
  const text = await r.text();
  return { status: r.status, code: errorCode(text), text, headers: r.headers };
}

async function openUploads(key: string): Promise<number> {
  const list = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
  return (list.Uploads ?? []).length;
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await server?.stop();
});

describe("server-side encryption", () => {
  test("SSE-C on GET and HEAD of a stored object: 400 InvalidRequest, no data returned", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "plain", Body: "visible" }));
    const get = await answer("GET", `/${BUCKET}/plain`, SSE_C_HEADERS);
    expect(get).toMatchObject({ status: 400, code: "InvalidRequest" });
    expect(get.text).not.toContain("visible");
    expect((await answer("HEAD", `/${BUCKET}/plain`, SSE_C_HEADERS)).status).toBe(400);
    expect(await body("plain")).toBe("visible");
  });

  test("an SSE-C key for a plaintext copy source: 400 InvalidRequest, nothing created", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "src", Body: "source" }));
    expect(await answer("PUT", `/${BUCKET}/copy-dest`, { "x-amz-copy-source": `${BUCKET}/src`, ...COPY_SOURCE_SSE_C_HEADERS })).toMatchObject({ status: 400, code: "InvalidRequest" });
    expect(await exists("copy-dest")).toBe(false);
  });

  test("SSE-C on UploadPart, UploadPartCopy, ListParts and CompleteMultipartUpload of a plain upload: 400, the upload unchanged", async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu" }));
    const q = `uploadId=${UploadId}`;
    expect(await answer("PUT", `/${BUCKET}/mpu?partNumber=1&${q}`, SSE_C_HEADERS, "part")).toMatchObject({ status: 400, code: "InvalidRequest" });
    expect(await answer("PUT", `/${BUCKET}/mpu?partNumber=1&${q}`, { "x-amz-copy-source": `${BUCKET}/src`, ...SSE_C_HEADERS })).toMatchObject({ status: 400, code: "InvalidRequest" });
    expect(await answer("GET", `/${BUCKET}/mpu?${q}`, SSE_C_HEADERS)).toMatchObject({ status: 400, code: "InvalidRequest" });
    const part = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mpu", UploadId, PartNumber: 1, Body: "only part" }));
    const complete = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${part.ETag}</ETag></Part></CompleteMultipartUpload>`;
    expect(await answer("POST", `/${BUCKET}/mpu?${q}`, SSE_C_HEADERS, complete)).toMatchObject({ status: 400, code: "InvalidRequest" });
    expect(await exists("mpu")).toBe(false);
    expect(await openUploads("mpu")).toBe(1);
  });

  test("SSE-S3 (AES256), SSE-KMS and DSSE-KMS are refused with 501: nothing would be encrypted", async () => {
    for (const ServerSideEncryption of ["AES256", "aws:kms", "aws:kms:dsse"] as const) {
      const refused = await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "sse", Body: "x", ServerSideEncryption })));
      expect(refused).toMatchObject({ name: "NotImplemented", status: 501 });
    }
    expect(await answer("PUT", `/${BUCKET}/sse`, { "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:111122223333:key/k" }, "x")).toMatchObject({ status: 501 });
    expect(await answer("PUT", `/${BUCKET}/sse`, { "x-amz-server-side-encryption-bucket-key-enabled": "true" }, "x")).toMatchObject({ status: 501 });
    expect(await answer("POST", `/${BUCKET}/sse?uploads`, { "x-amz-server-side-encryption": "AES256" })).toMatchObject({ status: 501 });
    expect(await answer("PUT", `/${BUCKET}/sse`, { "x-amz-copy-source": `${BUCKET}/src`, "x-amz-server-side-encryption": "aws:kms" })).toMatchObject({ status: 501 });
    expect(await exists("sse")).toBe(false);
    expect(await openUploads("sse")).toBe(0);
    // Asking for no bucket key is asking for what happens.
    expect((await answer("PUT", `/${BUCKET}/sse`, { "x-amz-server-side-encryption-bucket-key-enabled": "false" }, "x")).status).toBe(200);
  });
});

describe("sub-resources", () => {
  test("PUT ?versioning never creates a bucket: 404 NoSuchBucket on a new name, 501 on an existing bucket", async () => {
    const versioning = `<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>`;
    expect(await answer("PUT", `/fresh-name?versioning`, {}, versioning)).toMatchObject({ status: 404, code: "NoSuchBucket" });
    expect(await bucketExists("fresh-name")).toBe(false);
    expect(await answer("PUT", `/${BUCKET}?versioning`, {}, versioning)).toMatchObject({ status: 501, code: "NotImplemented" });
    // GetBucketVersioning still says the bucket has never been versioned.
    const got = await answer("GET", `/${BUCKET}?versioning`);
    expect(got.status).toBe(200);
    expect(got.text).not.toContain("Enabled");
  });

  test("every other PUT with a sub-resource on a bucket is 501 (existing) or 404 (new name), and creates nothing", async () => {
    for (const sub of ["policy", "object-lock", "encryption", "replication", "notification", "logging", "accelerate", "requestPayment", "publicAccessBlock", "metrics&id=m", "inventory&id=i", "analytics&id=a", "intelligent-tiering&id=t"]) {
      expect({ sub, ...(await answer("PUT", `/${BUCKET}?${sub}`, {}, "<x/>")) }).toMatchObject({ sub, status: 501, code: "NotImplemented" });
      expect({ sub, ...(await answer("PUT", `/new-${sub.split("&")[0]!.toLowerCase()}?${sub}`, {}, "<x/>")) }).toMatchObject({ sub, status: 404, code: "NoSuchBucket" });
    }
    // A sub-resource that names no PUT operation on a bucket (?location, ?uploads, ?versions): 405.
    for (const sub of ["location", "uploads", "versions"]) {
      expect({ sub, ...(await answer("PUT", `/created-by-${sub}?${sub}`)) }).toMatchObject({ sub, status: 405, code: "MethodNotAllowed" });
      expect(await bucketExists(`created-by-${sub}`)).toBe(false);
    }
    const buckets = await answer("GET", "/");
    expect(buckets.text.match(/<Name>/g)?.length).toBe(1);
  });

  test("object sub-resources Bunker does not implement: 501, the object unchanged; with a versionId too", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "subject", Body: "unchanged" }));
    for (const [method, sub] of [["PUT", "retention"], ["PUT", "legal-hold"], ["POST", "restore"], ["GET", "torrent"], ["PUT", "renameObject"], ["GET", "legal-hold&versionId=null"]] as const) {
      expect({ method, sub, ...(await answer(method, `/${BUCKET}/subject?${sub}`, {}, method === "GET" ? undefined : "<x/>")) }).toMatchObject({ method, sub, status: 501, code: "NotImplemented" });
    }
    expect(await body("subject")).toBe("unchanged");
  });

  test("garbage: a method S3 does not have is 405, two sub-resources are 400; ListDirectoryBuckets is 501", async () => {
    expect(await answer("PATCH", `/${BUCKET}/subject`, {}, "x")).toMatchObject({ status: 405, code: "MethodNotAllowed" });
    expect(await answer("POST", `/${BUCKET}/subject`, {}, "x")).toMatchObject({ status: 405, code: "MethodNotAllowed" });
    expect(await answer("PUT", `/${BUCKET}?cors&website`, {}, "<x/>")).toMatchObject({ status: 400, code: "InvalidRequest" });
    // Directory buckets do not exist: their listing is not the list of buckets.
    expect(await answer("GET", "/?x-id=ListDirectoryBuckets")).toMatchObject({ status: 501, code: "NotImplemented" });
    expect(await body("subject")).toBe("unchanged");
  });
});

describe("version ids", () => {
  const MALFORMED = "not/a:version";
  const UNKNOWN = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY";

  test("DELETE ?versionId: an unknown id deletes nothing (404 NoSuchVersion, 400 if malformed); null deletes the object", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "v", Body: "live" }));
    expect(await answer("DELETE", `/${BUCKET}/v?versionId=${UNKNOWN}`)).toMatchObject({ status: 404, code: "NoSuchVersion" });
    expect(await answer("DELETE", `/${BUCKET}/v?versionId=${encodeURIComponent(MALFORMED)}`)).toMatchObject({ status: 400, code: "InvalidArgument" });
    expect(await body("v")).toBe("live");
    const deleted = await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "v", VersionId: "null" }));
    expect(deleted.VersionId).toBe("null");
    expect(await exists("v")).toBe(false);
  });

  test("GET and HEAD ?versionId: an unknown id never serves the object; null does", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "g", Body: "the object" }));
    const get = await answer("GET", `/${BUCKET}/g?versionId=${UNKNOWN}`);
    expect(get).toMatchObject({ status: 404, code: "NoSuchVersion" });
    expect(get.text).not.toContain("the object");
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "g", VersionId: UNKNOWN })))).toMatchObject({ name: "NoSuchVersion", status: 404 });
    expect((await answer("HEAD", `/${BUCKET}/g?versionId=${UNKNOWN}`)).status).toBe(404);
    expect((await answer("GET", `/${BUCKET}/g?versionId=${encodeURIComponent(MALFORMED)}`)).status).toBe(400);
    const nullVersion = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "g", VersionId: "null" }));
    expect(await nullVersion.Body!.transformToString()).toBe("the object");
  });

  test("a copy source ?versionId: unknown → 404 NoSuchVersion and no copy (CopyObject, UploadPartCopy); null copies", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "cs", Body: "copy me" }));
    expect(await s3Failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "cs-copy", CopySource: `${BUCKET}/cs?versionId=${UNKNOWN}` })))).toMatchObject({ name: "NoSuchVersion", status: 404 });
    expect(await answer("PUT", `/${BUCKET}/cs-copy`, { "x-amz-copy-source": `${BUCKET}/cs?versionId=${encodeURIComponent(MALFORMED)}` })).toMatchObject({ status: 400, code: "InvalidArgument" });
    expect(await exists("cs-copy")).toBe(false);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "cs-part" }));
    expect(await answer("PUT", `/${BUCKET}/cs-part?partNumber=1&uploadId=${UploadId}`, { "x-amz-copy-source": `${BUCKET}/cs?versionId=${UNKNOWN}` })).toMatchObject({ status: 404, code: "NoSuchVersion" });
    const parts = await answer("GET", `/${BUCKET}/cs-part?uploadId=${UploadId}`);
    expect(parts.text).not.toContain("<Part>");
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "cs-copy", CopySource: `${BUCKET}/cs?versionId=null` }));
    expect(await body("cs-copy")).toBe("copy me");
  });

  test("DeleteObjects: an entry with an unknown VersionId is an <Error> NoSuchVersion and deletes nothing; null deletes", async () => {
    for (const k of ["d1", "d2", "d3"]) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: k }));
    const r = await s3.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: { Objects: [{ Key: "d1", VersionId: UNKNOWN }, { Key: "d2", VersionId: MALFORMED }, { Key: "d3", VersionId: "null" }] },
      }),
    );
    expect(r.Errors).toEqual([
      { Key: "d1", VersionId: UNKNOWN, Code: "NoSuchVersion", Message: "The specified version does not exist." },
      { Key: "d2", VersionId: MALFORMED, Code: "NoSuchVersion", Message: "The specified version does not exist." },
    ]);
    expect(r.Deleted).toEqual([{ Key: "d3", VersionId: "null" }]);
    expect(await exists("d1")).toBe(true);
    expect(await exists("d2")).toBe(true);
    expect(await exists("d3")).toBe(false);
  });
});

describe("conditional deletes", () => {
  test("DeleteObject If-Match: a stale ETag is 412 and deletes nothing; the current one deletes; a missing key is 404", async () => {
    const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "cd", Body: "v1" }));
    expect(await s3Failure(s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "cd", IfMatch: '"0123456789abcdef0123456789abcdef"' })))).toMatchObject({ name: "PreconditionFailed", status: 412 });
    expect(await body("cd")).toBe("v1");
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "cd", IfMatch: put.ETag }));
    expect(await exists("cd")).toBe(false);
    expect(await s3Failure(s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "cd", IfMatch: "*" })))).toMatchObject({ name: "NoSuchKey", status: 404 });
    expect(await answer("DELETE", `/${BUCKET}/cd`, { "x-amz-if-match-size": "2" })).toMatchObject({ status: 501, code: "NotImplemented" });
  });

  test("DeleteObjects <ETag>: a stale entry is an <Error> PreconditionFailed and stays", async () => {
    const e1 = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "ce1", Body: "one" }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "ce2", Body: "two" }));
    const r = await s3.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [{ Key: "ce1", ETag: e1.ETag }, { Key: "ce2", ETag: '"0123456789abcdef0123456789abcdef"' }, { Key: "ce3", Size: 3 }] } }),
    );
    expect(r.Deleted).toEqual([{ Key: "ce1" }]);
    expect(r.Errors?.map((e) => [e.Key, e.Code])).toEqual([
      ["ce2", "PreconditionFailed"],
      ["ce3", "NotImplemented"],
    ]);
    expect(await exists("ce1")).toBe(false);
    expect(await body("ce2")).toBe("two");
  });
});

describe("object lock, ACLs, storage classes, bucket owners", () => {
  test("object lock: retention and legal hold on writes, lock on CreateBucket: 501, nothing stored or created", async () => {
    const until = new Date(Date.now() + 86_400_000);
    expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "locked", Body: "x", ObjectLockMode: "COMPLIANCE", ObjectLockRetainUntilDate: until })))).toMatchObject({ name: "NotImplemented", status: 501 });
    expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "locked", Body: "x", ObjectLockLegalHoldStatus: "ON" })))).toMatchObject({ name: "NotImplemented", status: 501 });
    expect(await answer("POST", `/${BUCKET}/locked?uploads`, { "x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": until.toISOString() })).toMatchObject({ status: 501 });
    expect(await exists("locked")).toBe(false);
    expect(await openUploads("locked")).toBe(0);
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "locked-bucket", ObjectLockEnabledForBucket: true })))).toMatchObject({ name: "NotImplemented", status: 501 });
    expect(await bucketExists("locked-bucket")).toBe(false);
  });

  test("ACLs: private and bucket-owner-full-control pass; public-read and grants are refused as on a BucketOwnerEnforced bucket and store nothing", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "acl-private", Body: "x", ACL: "private" }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "acl-owner", Body: "x", ACL: "bucket-owner-full-control" }));
    expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "acl-public", Body: "x", ACL: "public-read" })))).toMatchObject({ name: "AccessControlListNotSupported", status: 400 });
    expect(await answer("PUT", `/${BUCKET}/acl-public`, { "x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"' }, "x")).toMatchObject({ status: 400, code: "AccessControlListNotSupported" });
    expect(await exists("acl-public")).toBe(false);
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "public-bucket", ACL: "public-read" })))).toMatchObject({ name: "InvalidBucketAclWithObjectOwnership", status: 400 });
    expect(await bucketExists("public-bucket")).toBe(false);
    await s3.send(new CreateBucketCommand({ Bucket: "private-bucket", ACL: "private" }));
    expect(await bucketExists("private-bucket")).toBe(true);
  });

  test("storage classes: STANDARD passes, any other is 501 and stores nothing", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "standard", Body: "x", StorageClass: "STANDARD" }));
    for (const StorageClass of ["GLACIER", "REDUCED_REDUNDANCY", "STANDARD_IA"] as const) {
      expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "archived", Body: "x", StorageClass })))).toMatchObject({ name: "NotImplemented", status: 501 });
    }
    expect(await exists("archived")).toBe(false);
  });

  test("x-amz-expected-bucket-owner: 501 on reads and writes (there is no AWS account to check)", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "owned", Body: "mine" }));
    const get = await answer("GET", `/${BUCKET}/owned`, { "x-amz-expected-bucket-owner": "111122223333" });
    expect(get).toMatchObject({ status: 501, code: "NotImplemented" });
    expect(get.text).not.toContain("mine");
    expect(await answer("DELETE", `/${BUCKET}/owned`, { "x-amz-expected-bucket-owner": "111122223333" })).toMatchObject({ status: 501 });
    expect(await body("owned")).toBe("mine");
  });

  test("checksums Bunker does not compute: 501", async () => {
    expect(await answer("PUT", `/${BUCKET}/sum`, { "x-amz-checksum-sha512": "AAAA" }, "x")).toMatchObject({ status: 501 });
    expect(await answer("POST", `/${BUCKET}/sum?uploads`, { "x-amz-checksum-algorithm": "SHA512" })).toMatchObject({ status: 501 });
    expect(await exists("sum")).toBe(false);
    expect(await openUploads("sum")).toBe(0);
  });
});

test("a 500 is logged once with the request id the client got", async () => {
  // A single-block object whose block file is gone from disk: its GET cannot be answered.
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "lost", Body: randomBytes(64 * 1024) }));
  const files = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
  for (const f of files(join(server.dir, "data"))) rmSync(f);
  const r = await signedFetch(server, "GET", `/${BUCKET}/lost`);
  await r.arrayBuffer();
  expect(r.status).toBeGreaterThanOrEqual(500);
  const requestId = r.headers.get("x-amz-request-id")!;
  expect(requestId).toMatch(/^[0-9A-F]{16}$/);
  const deadline = Date.now() + 5_000;
  while (!server.logs().includes(requestId) && Date.now() < deadline) await Bun.sleep(20);
  const lines = server.logs().split("\n").filter((l) => l.includes(requestId));
  expect(lines.length).toBe(1);
  expect(lines[0]).toContain(`GET /${BUCKET}/lost`);
});
