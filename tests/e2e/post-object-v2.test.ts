// PostObject forms as Ceph's s3-tests send them (test_post_object_*), on a real server: SigV2
// policy signatures (AWSAccessKeyId + signature, base64 HMAC-SHA1 of the base64 policy), the
// body built as python-requests builds it (every field a "file" part named after itself),
// condition and field names in any case, ${filename} expanded before the conditions, x-ignore-*
// fields, the bucket as a field the policy must cover, AWS's error statuses, and metadata kept
// byte for byte. A refused form stores nothing.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHmac } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";
import { startServer, type TestServer } from "../helpers/server";
import { errorCode } from "../helpers/signed";
import { sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "post-v2";
let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new CreateBucketCommand({ Bucket: "post-v2-other" }));
});

afterAll(async () => {
  await server?.stop();
});

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString().replace(/\.\d{3}Z$/, "Z");
/** The conditions most s3-tests forms carry. */
const standard = (): unknown[] => [{ bucket: BUCKET }, ["starts-with", "$key", "foo"], { acl: "private" }, ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", 0, 1024]];

function signPolicy(doc: unknown, secret = server.secretAccessKey): { policy: string; signature: string } {
  const policy = Buffer.from(JSON.stringify(doc)).toString("base64");
  return { policy, signature: createHmac("sha1", secret).update(policy).digest("base64") };
}

type Part = [name: string, value: string | Uint8Array, filename?: string];

/** A multipart body as python-requests' `files=` builds it: each part a file named after its field. */
function multipart(parts: Part[]): { body: Buffer; contentType: string } {
  const boundary = "s3testsboundary0123456789";
  const chunks: Buffer[] = [];
  for (const [name, value, filename] of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename ?? name}"\r\n\r\n`, "utf8"), Buffer.from(value), Buffer.from("\r\n"));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** The s3-tests form: key, AWSAccessKeyId, acl, signature, policy, Content-Type, extras, file last. */
function v2Form(doc: unknown, opts: { key?: string; extra?: Part[]; file?: Part; drop?: string[]; replace?: Record<string, string> } = {}): Part[] {
  const { policy, signature } = signPolicy(doc);
  const parts: Part[] = [
    ["key", opts.key ?? "foo.txt"],
    ["AWSAccessKeyId", server.accessKeyId],
    ["acl", "private"],
    ["signature", signature],
    ["policy", policy],
    ["Content-Type", "text/plain"],
    ...(opts.extra ?? []),
    opts.file ?? ["file", "bar"],
  ];
  return parts.filter(([n]) => !opts.drop?.includes(n)).map(([n, v, f]) => [n, opts.replace?.[n] ?? v, f]);
}

async function post(parts: Part[], bucket = BUCKET): Promise<Response> {
  const { body, contentType } = multipart(parts);
  return fetch(`${server.endpoint}/${bucket}`, { method: "POST", body, headers: { "content-type": contentType }, redirect: "manual" });
}

async function outcome(r: Response): Promise<string> {
  return `${r.status} ${errorCode(await r.text())}`.trim();
}

async function body(key: string): Promise<string | undefined> {
  try {
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return await got.Body!.transformToString();
  } catch {
    return undefined;
  }
}

describe("accepted (204) and stored", () => {
  test("an authenticated request (test_post_object_authenticated_request), and one without Content-Type", async () => {
    expect(await outcome(await post(v2Form({ expiration: inAnHour(), conditions: standard() })))).toBe("204");
    expect(await body("foo.txt")).toBe("bar");
    const noType = standard().filter((c) => !(Array.isArray(c) && c[1] === "$Content-Type"));
    expect(await outcome(await post(v2Form({ expiration: inAnHour(), conditions: noType }, { key: "foo-untyped.txt", drop: ["Content-Type"] })))).toBe("204");
    expect(await body("foo-untyped.txt")).toBe("bar");
  });

  test("${filename} in the key is expanded before the conditions (test_post_object_set_key_from_filename)", async () => {
    const r = await post(v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "${filename}", file: ["file", "named", "foo-$&-name.txt"] }));
    expect(await outcome(r)).toBe("204");
    expect(await body("foo-$&-name.txt")).toBe("named");
  });

  test("condition and field names in any case (test_post_object_case_insensitive_condition_fields)", async () => {
    const doc = {
      expiration: inAnHour(),
      conditions: [{ bUcKeT: BUCKET }, ["StArTs-WiTh", "$KeY", "foo"], { AcL: "private" }, ["StArTs-WiTh", "$CoNtEnT-TyPe", "text/plain"], ["content-length-range", 0, 1024]],
    };
    const { policy, signature } = signPolicy(doc);
    const parts: Part[] = [["kEy", "foo-case.txt"], ["AWSAccessKeyId", server.accessKeyId], ["aCl", "private"], ["signature", signature], ["pOLICy", policy], ["Content-Type", "text/plain"], ["file", "bar"]];
    expect(await outcome(await post(parts))).toBe("204");
    expect(await body("foo-case.txt")).toBe("bar");
  });

  test("escaped field values are compared as sent (test_post_object_escaped_field_values)", async () => {
    const conditions = standard().map((c) => (Array.isArray(c) && c[1] === "$key" ? ["starts-with", "$key", "\\$foo"] : c));
    expect(await outcome(await post(v2Form({ expiration: inAnHour(), conditions }, { key: "\\$foo.txt" })))).toBe("204");
    expect(await body("\\$foo.txt")).toBe("bar");
  });

  test("x-ignore-* fields need no condition (test_post_object_ignored_header)", async () => {
    expect(await outcome(await post(v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "foo-ignored.txt", extra: [["x-ignore-foo", "bar"]] })))).toBe("204");
  });

  test("x-amz-meta-* fields become metadata, byte for byte as their UTF-8 (test_post_object_user_specified_header)", async () => {
    const conditions = [...standard(), ["starts-with", "$x-amz-meta-foo", "bar"], ["starts-with", "$x-amz-meta-note", ""]];
    const r = await post(v2Form({ expiration: inAnHour(), conditions }, { key: "foo-meta.txt", extra: [["x-amz-meta-foo", "barclamp"], ["x-amz-meta-note", "café 日本"]] }));
    expect(await outcome(r)).toBe("204");
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "foo-meta.txt" }));
    expect(head.Metadata!.foo).toBe("barclamp");
    expect(Buffer.from(head.Metadata!.note!, "latin1").toString("utf8")).toBe("café 日本");
  });

  test("success_action_redirect: 303 to the URL with bucket, key and ETag (test_post_object_success_redirect_action)", async () => {
    const url = `${server.endpoint}/${BUCKET}`;
    const r = await post(v2Form({ expiration: inAnHour(), conditions: [...standard(), ["eq", "$success_action_redirect", url]] }, { key: "foo-redirect.txt", extra: [["success_action_redirect", url]] }));
    expect(r.status).toBe(303);
    const etag = (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "foo-redirect.txt" }))).ETag!;
    expect(r.headers.get("location")).toBe(`${url}?bucket=${BUCKET}&key=foo-redirect.txt&etag=${encodeURIComponent(etag)}`);
  });

  test("a SigV4 form (the AWS SDK's createPresignedPost) with metadata beyond ASCII", async () => {
    const p = await createPresignedPost(s3, { Bucket: BUCKET, Key: "v4-meta.txt", Fields: { "x-amz-meta-note": "voilà" }, Conditions: [{ "x-amz-meta-note": "voilà" }] });
    const form = new FormData();
    for (const [k, v] of Object.entries(p.fields)) form.append(k, v);
    form.append("file", new File(["v4"], "v4.txt"));
    const r = await fetch(`${server.endpoint}/${BUCKET}`, { method: "POST", body: form });
    expect(r.status).toBe(204);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "v4-meta.txt" }));
    expect(Buffer.from(head.Metadata!.note!, "latin1").toString("utf8")).toBe("voilà");
  });
});

describe("refused, as AWS answers (nothing stored)", () => {
  const cases: Array<[string, () => Part[], string, string?]> = [
    ["a reversed signature (test_post_object_invalid_signature)", () => v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "foo-r1", replace: { signature: signPolicy({ expiration: inAnHour(), conditions: standard() }).signature.split("").reverse().join("") } }), "403 SignatureDoesNotMatch"],
    ["an unknown access key (test_post_object_invalid_access_key)", () => v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "foo-r2", replace: { AWSAccessKeyId: "foo" } }), "403 InvalidAccessKeyId"],
    ["no signature (test_post_object_missing_signature)", () => v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "foo-r3", drop: ["signature"] }), "400 InvalidArgument"],
    ["no bucket condition (test_post_object_missing_policy_condition)", () => v2Form({ expiration: inAnHour(), conditions: standard().slice(1) }, { key: "foo-r4" }), "403 AccessDenied"],
    ["a condition on a field the form lacks (test_post_object_request_missing_policy_specified_field)", () => v2Form({ expiration: inAnHour(), conditions: [...standard(), ["starts-with", "$x-amz-meta-foo", "bar"]] }, { key: "foo-r5" }), "403 AccessDenied"],
    ["a field value the policy does not allow (test_post_object_invalid_request_field_value)", () => v2Form({ expiration: inAnHour(), conditions: [...standard(), ["eq", "$x-amz-meta-foo", ""]] }, { key: "foo-r6", extra: [["x-amz-meta-foo", "barclamp"]] }), "403 AccessDenied"],
    ["an expired policy (test_post_object_expired_policy)", () => v2Form({ expiration: new Date(Date.now() - 6000_000).toISOString(), conditions: standard() }, { key: "foo-r7" }), "403 AccessDenied"],
    ["an expiration not in ISO 8601 (test_post_object_invalid_date_format)", () => v2Form({ expiration: new Date(Date.now() + 3600_000).toISOString().replace("T", " ").replace("Z", "+00:00"), conditions: standard() }, { key: "foo-r8" }), "400 InvalidPolicyDocument"],
    ["no expiration (test_post_object_missing_expires_condition)", () => v2Form({ conditions: standard() }, { key: "foo-r9" }), "400 InvalidPolicyDocument"],
    ["EXPIRATION in capitals (test_post_object_expires_is_case_sensitive)", () => v2Form({ EXPIRATION: inAnHour(), conditions: standard() }, { key: "foo-r10" }), "400 InvalidPolicyDocument"],
    ["CONDITIONS in capitals (test_post_object_condition_is_case_sensitive)", () => v2Form({ expiration: inAnHour(), CONDITIONS: standard() }, { key: "foo-r11" }), "400 InvalidPolicyDocument"],
    ["an empty condition (test_post_object_empty_conditions)", () => v2Form({ expiration: inAnHour(), conditions: [{}] }, { key: "foo-r12" }), "400 InvalidPolicyDocument"],
    ["a size above the range (test_post_object_upload_size_limit_exceeded)", () => v2Form({ expiration: inAnHour(), conditions: [...standard().slice(0, 4), ["content-length-range", 0, 0]] }, { key: "foo-r13" }), "400 EntityTooLarge"],
    ["a size below the range (test_post_object_upload_size_below_minimum)", () => v2Form({ expiration: inAnHour(), conditions: [...standard().slice(0, 4), ["content-length-range", 512, 1000]] }, { key: "foo-r14" }), "400 EntityTooSmall"],
    ["a range without its maximum (test_post_object_missing_content_length_argument)", () => v2Form({ expiration: inAnHour(), conditions: [...standard().slice(0, 4), ["content-length-range", 0]] }, { key: "foo-r15" }), "400 InvalidPolicyDocument"],
    ["a negative range (test_post_object_invalid_content_length_argument)", () => v2Form({ expiration: inAnHour(), conditions: [...standard().slice(0, 4), ["content-length-range", -1, 0]] }, { key: "foo-r16" }), "400 InvalidPolicyDocument"],
    ["no key (test_post_object_no_key_specified)", () => v2Form({ expiration: inAnHour(), conditions: [standard()[0], ...standard().slice(2)] }, { drop: ["key"] }), "400 InvalidArgument"],
  ];
  for (const [name, parts, expected] of cases) {
    test(name, async () => {
      const form = parts();
      expect(await outcome(await post(form))).toBe(expected);
      const key = form.find(([n]) => n === "key")?.[1];
      if (typeof key === "string") expect(await body(key)).toBeUndefined();
    });
  }

  test("a form for another bucket (test_post_object_wrong_bucket): its bucket condition fails", async () => {
    const r = await post(v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "${filename}", extra: [["bucket", BUCKET]], file: ["file", "bar", "foo-wrong.txt"] }), "post-v2-other");
    expect(await outcome(r)).toBe("403 AccessDenied");
    await expect(s3.send(new HeadObjectCommand({ Bucket: "post-v2-other", Key: "foo-wrong.txt" }))).rejects.toThrow();
  });

  test("a form signed both ways, or with no credential at all beside its policy, is refused", async () => {
    const both = v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "foo-both", extra: [["x-amz-signature", "00"]] });
    expect(await outcome(await post(both))).toBe("400 InvalidArgument");
    const none = v2Form({ expiration: inAnHour(), conditions: standard() }, { key: "foo-none", drop: ["AWSAccessKeyId", "signature"] });
    expect(await outcome(await post(none))).toBe("400 InvalidArgument");
    for (const k of ["foo-both", "foo-none"]) expect(await body(k)).toBeUndefined();
  });
});
