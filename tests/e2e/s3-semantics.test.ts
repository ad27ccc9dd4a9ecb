// S3 behaviours that Ceph's s3-tests check and Bunker first got wrong, each through the AWS SDK
// against the real server: DeleteBucket with only unfinished uploads, If-None-Match with ETags,
// UploadPartCopy past the source's end, a part number listed twice at Complete, and the
// delete-marker header of a deleted key.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  HeadObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { s3Failure, sdkClient } from "../helpers/clients";
import { signedFetch } from "../helpers/signed";

setDefaultTimeout(60_000);

const BUCKET = "semantics";
let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});
afterAll(async () => {
  await server?.stop();
});

test("DeleteBucket deletes a bucket holding only unfinished multipart uploads (they are aborted), not one holding an object", async () => {
  await s3.send(new CreateBucketCommand({ Bucket: "uploads-only" }));
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads-only", Key: "k" }));
  await s3.send(new UploadPartCommand({ Bucket: "uploads-only", Key: "k", UploadId, PartNumber: 1, Body: "part" }));
  expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: "uploads-only" }))).Uploads?.length).toBe(1);
  await s3.send(new DeleteBucketCommand({ Bucket: "uploads-only" }));
  expect(await s3Failure(s3.send(new HeadBucketCommand({ Bucket: "uploads-only" })))).toMatchObject({ status: 404 });

  await s3.send(new CreateBucketCommand({ Bucket: "has-object" }));
  await s3.send(new PutObjectCommand({ Bucket: "has-object", Key: "k", Body: "x" }));
  await s3.send(new CreateMultipartUploadCommand({ Bucket: "has-object", Key: "u" }));
  expect(await s3Failure(s3.send(new DeleteBucketCommand({ Bucket: "has-object" })))).toMatchObject({ name: "BucketNotEmpty", status: 409 });
  // Refused: its upload is left as it was.
  expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: "has-object" }))).Uploads?.length).toBe(1);
});

test("PutObject If-None-Match with ETags: 412 when the current object has one of them, written otherwise", async () => {
  const { ETag } = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "inm", Body: "one", IfNoneMatch: "*" }));
  expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "inm", Body: "two", IfNoneMatch: "*" })))).toMatchObject({ name: "PreconditionFailed", status: 412 });
  expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "inm", Body: "two", IfNoneMatch: ETag })))).toMatchObject({ name: "PreconditionFailed", status: 412 });
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "inm", Body: "three", IfNoneMatch: '"0123456789abcdef0123456789abcdef"' }));
  expect(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "inm" }))).Body!.transformToString()).toBe("three");
  // No object: any ETag condition holds.
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "inm-new", Body: "x", IfNoneMatch: ETag }));
});

test("UploadPartCopy of a range past the source's end is InvalidRange; a reversed range InvalidArgument", async () => {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "src", Body: "0123456789" }));
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mpc" }));
  const copy = (range: string) => s3.send(new UploadPartCopyCommand({ Bucket: BUCKET, Key: "mpc", UploadId, PartNumber: 1, CopySource: `${BUCKET}/src`, CopySourceRange: range }));
  expect(await s3Failure(copy("bytes=5-10"))).toMatchObject({ name: "InvalidRange" });
  expect(await s3Failure(copy("bytes=5-2"))).toMatchObject({ name: "InvalidArgument", status: 400 });
  await copy("bytes=5-9");
});

test("CompleteMultipartUpload with a part number listed twice takes its last entry (descending numbers stay InvalidPartOrder: sdk.test.ts)", async () => {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "twice" }));
  const first = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "twice", UploadId, PartNumber: 1, Body: "first" }));
  const again = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "twice", UploadId, PartNumber: 1, Body: "again" }));
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "twice", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: first.ETag }, { PartNumber: 1, ETag: again.ETag }] } }));
  expect(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "twice" }))).Body!.transformToString()).toBe("again");
});

test("GET and HEAD of a deleted key: 404 with x-amz-delete-marker: false (an unversioned bucket); a key never written has none", async () => {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "gone", Body: "x" }));
  await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "gone" }));
  for (const method of ["GET", "HEAD"]) {
    const r = await signedFetch(server, method, `/${BUCKET}/gone`);
    expect([r.status, r.headers.get("x-amz-delete-marker")]).toEqual([404, "false"]);
  }
  const never = await signedFetch(server, "HEAD", `/${BUCKET}/never-written`);
  expect([never.status, never.headers.get("x-amz-delete-marker")]).toEqual([404, null]);
});

test("ListObjectVersions lists every object once as version null, the latest, in pages; no delete markers", async () => {
  await s3.send(new CreateBucketCommand({ Bucket: "versions" }));
  for (const k of ["a", "b/1", "b/2", "c", "d"]) await s3.send(new PutObjectCommand({ Bucket: "versions", Key: k, Body: k }));
  await s3.send(new DeleteObjectCommand({ Bucket: "versions", Key: "d" }));
  const first = await s3.send(new ListObjectVersionsCommand({ Bucket: "versions", MaxKeys: 2, Delimiter: "/" }));
  expect(first.Versions?.map((v) => [v.Key, v.VersionId, v.IsLatest])).toEqual([["a", "null", true]]);
  expect(first.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["b/"]);
  expect([first.IsTruncated, first.NextKeyMarker, first.NextVersionIdMarker]).toEqual([true, "b/", "null"]);
  const rest = await s3.send(new ListObjectVersionsCommand({ Bucket: "versions", Delimiter: "/", KeyMarker: first.NextKeyMarker, VersionIdMarker: first.NextVersionIdMarker }));
  expect(rest.Versions?.map((v) => v.Key)).toEqual(["c"]);
  expect(rest.DeleteMarkers ?? []).toEqual([]);
  expect(rest.IsTruncated).toBe(false);
  expect(await s3Failure(s3.send(new ListObjectVersionsCommand({ Bucket: "versions", KeyMarker: "a", VersionIdMarker: "3HL4kqtJlcpXroDTDmJ" })))).toMatchObject({ name: "InvalidArgument", status: 400 });
});

test("a version asked for by id is named back: x-amz-version-id on GET/HEAD, x-amz-copy-source-version-id on copies", async () => {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "vsrc", Body: "v" }));
  for (const method of ["GET", "HEAD"]) {
    const r = await signedFetch(server, method, `/${BUCKET}/vsrc?versionId=null`);
    expect([r.status, r.headers.get("x-amz-version-id")]).toEqual([200, "null"]);
    expect((await signedFetch(server, method, `/${BUCKET}/vsrc`)).headers.get("x-amz-version-id")).toBeNull();
  }
  const copy = await signedFetch(server, "PUT", `/${BUCKET}/vdst`, { headers: { "x-amz-copy-source": `${BUCKET}/vsrc?versionId=null` } });
  expect([copy.status, copy.headers.get("x-amz-copy-source-version-id")]).toEqual([200, "null"]);
});

test("CopyObject with COPY keeps the source's metadata but takes the website redirect from the request", async () => {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "rsrc", Body: "r", ContentType: "text/x-kept", WebsiteRedirectLocation: "/elsewhere" }));
  await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "rdst", CopySource: `${BUCKET}/rsrc` }));
  const plain = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "rdst" }));
  expect([plain.ContentType, plain.WebsiteRedirectLocation]).toEqual(["text/x-kept", undefined]);
  await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "rdst2", CopySource: `${BUCKET}/rsrc`, WebsiteRedirectLocation: "/new" }));
  expect((await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "rdst2" }))).WebsiteRedirectLocation).toBe("/new");
});
