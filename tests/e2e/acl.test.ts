// ACLs as S3 has them on a BucketOwnerEnforced bucket, on a real server: Get*Acl answer the
// owner with FULL_CONTROL, Put*Acl accept only that (canned or as an AccessControlPolicy) and
// refuse anything else with 400 AccessControlListNotSupported; ownership controls answer
// BucketOwnerEnforced; GetBucketPolicyStatus says public exactly when the website is on.
// The AWS SDK, signed raw requests, and s3cmd `info` (which reads the ACLs).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateBucketCommand,
  DeleteBucketOwnershipControlsCommand,
  DeleteBucketWebsiteCommand,
  GetBucketAclCommand,
  GetBucketOwnershipControlsCommand,
  GetBucketPolicyStatusCommand,
  GetObjectAclCommand,
  PutBucketAclCommand,
  PutBucketOwnershipControlsCommand,
  PutBucketWebsiteCommand,
  PutObjectAclCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { run, s3Failure, sdkClient, writeS3cmdConfig } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

setDefaultTimeout(60_000);

const BUCKET = "acl-bucket";
const S3CMD = "/usr/bin/s3cmd";
let server: TestServer;
let s3: S3Client;
let tmp: string;

async function answer(method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; code: string; text: string }> {
  const res = await signedFetch(server, method, target, { headers, body });
  const text = await res.text();
  return { status: res.status, code: errorCode(text), text };
}

/** An AccessControlPolicy granting `permission` to the canonical user `id`. */
function policy(id: string, permission: string, ownerId = server.accessKeyId): string {
  return (
    `<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>${ownerId}</ID></Owner><AccessControlList>` +
    `<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>${id}</ID></Grantee><Permission>${permission}</Permission></Grant>` +
    `</AccessControlList></AccessControlPolicy>`
  );
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-acl-"));
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "doc.txt", Body: "hello" }));
});

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("reading ACLs", () => {
  test("GetBucketAcl and GetObjectAcl: the owner (the requesting key) with FULL_CONTROL", async () => {
    const expected = {
      Owner: { ID: server.accessKeyId, DisplayName: "test" },
      Grants: [{ Grantee: { ID: server.accessKeyId, DisplayName: "test", Type: "CanonicalUser" }, Permission: "FULL_CONTROL" }],
    };
    expect(await s3.send(new GetBucketAclCommand({ Bucket: BUCKET }))).toMatchObject(expected);
    expect(await s3.send(new GetObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt" }))).toMatchObject(expected);
    expect(await s3.send(new GetObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", VersionId: "null" }))).toMatchObject(expected);
  });

  test("GetObjectAcl of a missing key is NoSuchKey; of another version NoSuchVersion; of a missing bucket NoSuchBucket", async () => {
    expect(await s3Failure(s3.send(new GetObjectAclCommand({ Bucket: BUCKET, Key: "missing" })))).toMatchObject({ name: "NoSuchKey", status: 404 });
    expect(await s3Failure(s3.send(new GetObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", VersionId: "3HL4kqtJlcpXroDTDmJ" })))).toMatchObject({ name: "NoSuchVersion", status: 404 });
    expect(await s3Failure(s3.send(new GetBucketAclCommand({ Bucket: "no-such-bucket" })))).toMatchObject({ name: "NoSuchBucket", status: 404 });
  });
});

describe("writing ACLs", () => {
  test("canned private and bucket-owner-full-control are accepted; any other canned ACL is AccessControlListNotSupported", async () => {
    for (const ACL of ["private", "bucket-owner-full-control"] as const) {
      expect((await s3.send(new PutBucketAclCommand({ Bucket: BUCKET, ACL: ACL as "private" }))).$metadata.httpStatusCode).toBe(200);
      expect((await s3.send(new PutObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", ACL }))).$metadata.httpStatusCode).toBe(200);
    }
    for (const ACL of ["public-read", "public-read-write", "authenticated-read"] as const) {
      expect(await s3Failure(s3.send(new PutBucketAclCommand({ Bucket: BUCKET, ACL })))).toMatchObject({ name: "AccessControlListNotSupported", status: 400 });
      expect(await s3Failure(s3.send(new PutObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", ACL })))).toMatchObject({ name: "AccessControlListNotSupported", status: 400 });
    }
    expect(await answer("PUT", `/${BUCKET}?acl`, { "x-amz-acl": "everyone" })).toMatchObject({ status: 400, code: "InvalidArgument" });
    expect(await answer("PUT", `/${BUCKET}?acl`, { "x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"' })).toMatchObject({ status: 400, code: "AccessControlListNotSupported" });
  });

  test("the AccessControlPolicy GetBucketAcl answers can be put back; one granting anything else is refused", async () => {
    const got = await s3.send(new GetBucketAclCommand({ Bucket: BUCKET }));
    const AccessControlPolicy = { Owner: got.Owner, Grants: got.Grants };
    expect((await s3.send(new PutBucketAclCommand({ Bucket: BUCKET, AccessControlPolicy }))).$metadata.httpStatusCode).toBe(200);
    expect((await s3.send(new PutObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", AccessControlPolicy }))).$metadata.httpStatusCode).toBe(200);
    const readOnly = { Owner: got.Owner, Grants: [{ ...got.Grants![0]!, Permission: "READ" as const }] };
    expect(await s3Failure(s3.send(new PutBucketAclCommand({ Bucket: BUCKET, AccessControlPolicy: readOnly })))).toMatchObject({ name: "AccessControlListNotSupported", status: 400 });
    const everyone = { Owner: got.Owner, Grants: [...got.Grants!, { Grantee: { Type: "Group" as const, URI: "http://acs.amazonaws.com/groups/global/AllUsers" }, Permission: "READ" as const }] };
    expect(await s3Failure(s3.send(new PutObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", AccessControlPolicy: everyone })))).toMatchObject({ name: "AccessControlListNotSupported", status: 400 });
    expect(await answer("PUT", `/${BUCKET}?acl`, {}, policy("someone-else", "FULL_CONTROL"))).toMatchObject({ status: 400, code: "AccessControlListNotSupported" });
    expect(await answer("PUT", `/${BUCKET}?acl`, {}, policy(server.accessKeyId, "FULL_CONTROL", "someone-else"))).toMatchObject({ status: 400, code: "AccessControlListNotSupported" });
    expect(await answer("PUT", `/${BUCKET}?acl`, {}, policy(server.accessKeyId, "FULL_CONTROL"))).toMatchObject({ status: 200 });
  });

  test("a missing, malformed or doubled ACL is refused; PutObjectAcl of a missing key is NoSuchKey", async () => {
    expect(await answer("PUT", `/${BUCKET}?acl`)).toMatchObject({ status: 400, code: "MissingSecurityHeader" });
    expect(await answer("PUT", `/${BUCKET}?acl`, {}, "<AccessControlPolicy><Owner>")).toMatchObject({ status: 400, code: "MalformedACLError" });
    expect(await answer("PUT", `/${BUCKET}?acl`, {}, "<AccessControlPolicy/>")).toMatchObject({ status: 400, code: "MalformedACLError" });
    expect(await answer("PUT", `/${BUCKET}?acl`, { "x-amz-acl": "private" }, policy(server.accessKeyId, "FULL_CONTROL"))).toMatchObject({ status: 400, code: "InvalidRequest" });
    expect(await s3Failure(s3.send(new PutObjectAclCommand({ Bucket: BUCKET, Key: "missing", ACL: "private" })))).toMatchObject({ name: "NoSuchKey", status: 404 });
  });

  test("reading an ACL takes read permission, writing one write permission", async () => {
    const reader = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "reader" });
    const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
    await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: reader.accessKeyId, permissions: { read: true } });
    const r = sdkClient(server, { accessKeyId: reader.accessKeyId, secretAccessKey: reader.secretAccessKey });
    expect(await r.send(new GetBucketAclCommand({ Bucket: BUCKET }))).toMatchObject({ Owner: { ID: reader.accessKeyId, DisplayName: "reader" } });
    expect((await r.send(new GetObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt" }))).Grants).toHaveLength(1);
    expect(await s3Failure(r.send(new PutBucketAclCommand({ Bucket: BUCKET, ACL: "private" })))).toMatchObject({ name: "AccessDenied", status: 403 });
    expect(await s3Failure(r.send(new PutObjectAclCommand({ Bucket: BUCKET, Key: "doc.txt", ACL: "private" })))).toMatchObject({ name: "AccessDenied", status: 403 });
    expect(await s3Failure(r.send(new PutBucketOwnershipControlsCommand({ Bucket: BUCKET, OwnershipControls: { Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] } })))).toMatchObject({ name: "AccessDenied" });
  });
});

describe("ownership controls and policy status", () => {
  test("GetBucketOwnershipControls: BucketOwnerEnforced; Put accepts only that; Delete is 501", async () => {
    const got = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket: BUCKET }));
    expect(got.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] });
    const put = (ObjectOwnership: "BucketOwnerEnforced" | "BucketOwnerPreferred" | "ObjectWriter") =>
      s3.send(new PutBucketOwnershipControlsCommand({ Bucket: BUCKET, OwnershipControls: { Rules: [{ ObjectOwnership }] } }));
    expect((await put("BucketOwnerEnforced")).$metadata.httpStatusCode).toBe(200);
    expect(await s3Failure(put("ObjectWriter"))).toMatchObject({ name: "NotImplemented", status: 501 });
    expect(await s3Failure(put("BucketOwnerPreferred"))).toMatchObject({ name: "NotImplemented", status: 501 });
    const doc = (inner: string) => `<OwnershipControls xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}</OwnershipControls>`;
    expect(await answer("PUT", `/${BUCKET}?ownershipControls`, {}, doc("<Rule><ObjectOwnership>Nobody</ObjectOwnership></Rule>"))).toMatchObject({ status: 400, code: "MalformedXML" });
    expect(await answer("PUT", `/${BUCKET}?ownershipControls`, {}, doc(""))).toMatchObject({ status: 400, code: "MalformedXML" });
    expect(await s3Failure(s3.send(new DeleteBucketOwnershipControlsCommand({ Bucket: BUCKET })))).toMatchObject({ name: "NotImplemented", status: 501 });
    expect((await s3.send(new GetBucketOwnershipControlsCommand({ Bucket: BUCKET }))).OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] });
  });

  test("GetBucketPolicyStatus: public exactly while the website is published", async () => {
    const isPublic = async () => (await s3.send(new GetBucketPolicyStatusCommand({ Bucket: BUCKET }))).PolicyStatus?.IsPublic;
    expect(await isPublic()).toBe(false);
    await s3.send(new PutBucketWebsiteCommand({ Bucket: BUCKET, WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } }));
    expect(await isPublic()).toBe(true);
    await s3.send(new PutBucketWebsiteCommand({ Bucket: BUCKET, WebsiteConfiguration: { RedirectAllRequestsTo: { HostName: "example.com" } } }));
    expect(await isPublic()).toBe(false);
    await s3.send(new DeleteBucketWebsiteCommand({ Bucket: BUCKET }));
    expect(await isPublic()).toBe(false);
  });
});

test("s3cmd info reads the bucket's and the object's ACL", async () => {
  if (!(await Bun.file(S3CMD).exists())) {
    console.warn(`skipped: ${S3CMD} is not installed (apt-get install s3cmd)`);
    return;
  }
  const cfg = writeS3cmdConfig(server, tmp, ["signature_v2 = False"]);
  const env = { PATH: "/usr/bin:/bin", HOME: tmp, LANG: "C.UTF-8", LC_ALL: "C.UTF-8" };
  for (const target of [`s3://${BUCKET}`, `s3://${BUCKET}/doc.txt`]) {
    const r = await run([S3CMD, "-c", cfg, "info", target], { env, timeoutMs: 30_000 });
    expect({ target, code: r.code, stderr: r.stderr }).toEqual({ target, code: 0, stderr: "" });
    expect(r.stdout).toMatch(/ACL:\s+test: FULL_CONTROL/);
  }
});
