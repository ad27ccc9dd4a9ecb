// PostObject (browser form uploads) on a real server, with forms signed by the AWS SDK's
// createPresignedPost and sent as a browser would (multipart/form-data): the object lands
// byte-identical with its metadata; policy conditions, expiry, signature, size range,
// permissions and quotas are enforced, and a refused form stores nothing.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, GetObjectTaggingCommand, HeadObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";
import { startServer, type TestServer } from "../helpers/server";
import { MiB, sdkClient, sha256Hex } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "uploads";
let server: TestServer;
let s3: S3Client;

type PresignedOptions = Parameters<typeof createPresignedPost>[1];

async function presign(opts: Partial<PresignedOptions> = {}) {
  return createPresignedPost(s3, { Bucket: BUCKET, Key: "user/${filename}", Expires: 60, ...opts } as PresignedOptions);
}

/** Sends the form as a browser does: the signed fields, extra fields, then the file last. */
async function submit(post: { url: string; fields: Record<string, string> }, file: Uint8Array, extra: Record<string, string> = {}, filename = "photo.jpg"): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries({ ...post.fields, ...extra })) form.append(k, v);
  form.append("file", new File([file], filename, { type: "image/jpeg" }));
  // The SDK's URL is virtual-host or path style depending on the client: post to the bucket path.
  return fetch(`${server.endpoint}/${BUCKET}`, { method: "POST", body: form, redirect: "manual" });
}

async function exists(key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await server?.stop();
});

test("a signed form uploads a multi-block file under ${filename}, with its metadata (204 by default)", async () => {
  const body = randomBytes(3 * MiB + 777);
  const post = await presign({
    Conditions: [["starts-with", "$key", "user/"], ["starts-with", "$Content-Type", "image/"], ["content-length-range", 1, 10 * MiB], { "x-amz-meta-owner": "alice" }],
    Fields: { "x-amz-meta-owner": "alice", "Content-Type": "image/jpeg" },
  });
  const r = await submit(post, body);
  expect(r.status).toBe(204);
  const etag = r.headers.get("etag");
  const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "user/photo.jpg" }));
  const bytes = await got.Body!.transformToByteArray();
  expect(sha256Hex(bytes)).toBe(sha256Hex(body));
  expect(got.ContentType).toBe("image/jpeg");
  expect(got.Metadata).toEqual({ owner: "alice" });
  expect(got.ETag).toBe(etag!);
});

test("success_action_status 201 answers PostResponse XML; success_action_redirect answers 303 with bucket, key and etag", async () => {
  const created = await submit(await presign({ Fields: { success_action_status: "201" }, Conditions: [{ success_action_status: "201" }] }), Buffer.from("tiny"), {}, "a.txt");
  expect(created.status).toBe(201);
  const xml = await created.text();
  expect(xml).toContain("<Bucket>uploads</Bucket>");
  expect(xml).toContain("<Key>user/a.txt</Key>");
  expect(xml).toContain("<ETag>");

  const back = "https://app.example/done?from=upload";
  const redirected = await submit(await presign({ Fields: { success_action_redirect: back }, Conditions: [{ success_action_redirect: back }] }), Buffer.from("x"), {}, "b.txt");
  expect(redirected.status).toBe(303);
  const location = new URL(redirected.headers.get("location")!);
  expect(location.origin + location.pathname).toBe("https://app.example/done");
  expect(location.searchParams.get("from")).toBe("upload");
  expect(location.searchParams.get("key")).toBe("user/b.txt");
  expect(location.searchParams.get("bucket")).toBe(BUCKET);
  expect(await exists("user/b.txt")).toBe(true);
});

test("refused: a field the policy does not cover, a failed condition, a size out of range, a bad signature, an expired policy, no policy", async () => {
  const refused = async (r: Response, status: number, text: string) => {
    expect(r.status).toBe(status);
    expect(await r.text()).toContain(text);
  };
  const post = await presign({ Conditions: [["content-length-range", 10, 100]] });
  await refused(await submit(post, Buffer.alloc(50), { "x-amz-meta-sneaky": "1" }, "c1.txt"), 403, "Extra input fields: x-amz-meta-sneaky");
  await refused(await submit(post, Buffer.alloc(5), {}, "c2.txt"), 400, "EntityTooSmall");
  await refused(await submit(post, Buffer.alloc(101), {}, "c3.txt"), 400, "EntityTooLarge");
  const other = await presign({ Key: "elsewhere/x", Conditions: [["eq", "$key", "elsewhere/x"]] });
  await refused(await submit({ url: other.url, fields: { ...other.fields, key: "user/evil" } }, Buffer.alloc(1)), 403, "Policy Condition failed");
  await refused(await submit({ url: post.url, fields: { ...post.fields, "X-Amz-Signature": "0".repeat(64) } }, Buffer.alloc(50), {}, "c4.txt"), 403, "SignatureDoesNotMatch");
  const expired = await presign({ Expires: -10 });
  await refused(await submit(expired, Buffer.alloc(1), {}, "c5.txt"), 403, "Policy expired");
  const { Policy: _p, ...noPolicy } = post.fields;
  await refused(await submit({ url: post.url, fields: noPolicy }, Buffer.alloc(50), {}, "c6.txt"), 403, "AccessDenied");
  const withNote = await presign({ Conditions: [["starts-with", "$x-amz-meta-note", ""]] });
  await refused(await submit(withNote, Buffer.alloc(5), { "x-amz-meta-note": "two\r\nlines" }, "c7.txt"), 400, "InvalidArgument");
  for (const k of ["c1.txt", "c2.txt", "c3.txt", "c4.txt", "c5.txt", "c6.txt", "c7.txt"]) expect(await exists(`user/${k}`)).toBe(false);
  expect(await exists("user/evil")).toBe(false);
});

test("a key without write permission on the bucket is refused", async () => {
  const reader = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "reader" });
  const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
  await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: reader.accessKeyId, permissions: { read: true } });
  const readerClient = sdkClient(server, { accessKeyId: reader.accessKeyId, secretAccessKey: reader.secretAccessKey });
  const post = await createPresignedPost(readerClient, { Bucket: BUCKET, Key: "user/r.txt", Expires: 60 });
  const r = await submit(post, Buffer.from("r"), {}, "r.txt");
  expect(r.status).toBe(403);
  expect(await exists("user/r.txt")).toBe(false);
});

test("a form asking for what Bunker does not do (SSE-S3/KMS, object lock) is refused and stores nothing", async () => {
  const cases: [string, Record<string, string>][] = [
    ["sse.txt", { "x-amz-server-side-encryption": "aws:kms" }],
    ["locked.txt", { "x-amz-object-lock-mode": "COMPLIANCE", "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z" }],
  ];
  for (const [name, extra] of cases) {
    // Covered by the policy, so that only the field's meaning can refuse the form.
    const post = await presign({ Key: `user/${name}`, Fields: extra });
    const r = await submit(post, Buffer.from("data"), {}, name);
    expect(`${name}: ${r.status}`).toBe(`${name}: 501`);
    expect(await r.text()).toContain("NotImplemented");
    expect(await exists(`user/${name}`)).toBe(false);
  }
});

test("a form's tagging field (a <Tagging> document) tags the object; a bad one stores nothing", async () => {
  const tagging = "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>";
  const ok = await submit(await presign({ Key: "user/tagged.txt", Fields: { tagging } }), Buffer.from("data"), {}, "tagged.txt");
  expect(ok.status).toBe(204);
  const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "user/tagged.txt" }));
  expect(tags.TagSet).toEqual([{ Key: "a", Value: "b" }]);
  const bad = await submit(await presign({ Key: "user/badtag.txt", Fields: { tagging: "<Tagging><TagSet><Tag><Key>aws:x</Key><Value>b</Value></Tag></TagSet></Tagging>" } }), Buffer.from("data"), {}, "badtag.txt");
  expect(bad.status).toBe(400);
  expect(await bad.text()).toContain("InvalidTag");
  expect(await exists("user/badtag.txt")).toBe(false);
});

test("a form's x-amz-checksum-* field is verified (a wrong one is 400 BadDigest, nothing stored) and kept", async () => {
  const file = Buffer.from("checked contents");
  const good = createHash("sha256").update(file).digest("base64");
  const ok = await submit(await presign({ Key: "user/sum.txt", Fields: { "x-amz-checksum-sha256": good } }), file, {}, "sum.txt");
  expect(ok.status).toBe(204);
  const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "user/sum.txt", ChecksumMode: "ENABLED" }));
  expect(head.ChecksumSHA256).toBe(good);
  const bad = await submit(await presign({ Key: "user/badsum.txt", Fields: { "x-amz-checksum-sha256": createHash("sha256").update("other").digest("base64") } }), file, {}, "badsum.txt");
  expect(bad.status).toBe(400);
  expect(await bad.text()).toContain("BadDigest");
  expect(await exists("user/badsum.txt")).toBe(false);
  // Not in the policy: accepted all the same (it can only make the upload stricter).
  const uncovered = await presign({ Key: "user/sum2.txt" });
  const r = await submit({ url: uncovered.url, fields: { ...uncovered.fields, "x-amz-checksum-sha256": good } }, file, {}, "sum2.txt");
  expect(r.status).toBe(204);
});

test("a signed form sent to a sub-resource (?delete, ?uploads) is not an upload and stores nothing", async () => {
  for (const sub of ["delete", "uploads"]) {
    const post = await presign({ Key: `user/sub-${sub}.txt` });
    const form = new FormData();
    for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
    form.append("file", new File([Buffer.from("x")], `sub-${sub}.txt`));
    const r = await fetch(`${server.endpoint}/${BUCKET}?${sub}`, { method: "POST", body: form, redirect: "manual" });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(await exists(`user/sub-${sub}.txt`)).toBe(false);
  }
});
