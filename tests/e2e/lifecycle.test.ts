// Lifecycle rules on a real server: set with awscli and the AWS SDK, read back as written
// (Prefix, Filter, tags, ExpiredObjectDeleteMarker, generated IDs), refused when unsupported; a
// rule with a past expiry date deletes the objects it matches at the next pass (`bunker repair
// lifecycle`), and only those (a rule requiring tags, only objects carrying them).
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateBucketCommand,
  DeleteBucketLifecycleCommand,
  GetBucketLifecycleConfigurationCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { waitFor } from "../helpers/cluster";
import { awsCli, s3Failure, sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "lifecycle-bucket";
let server: TestServer;
let s3: S3Client;
let tmp: string;

/** The name of the S3 error a request fails with. */
const s3Error = async (p: Promise<unknown>) => (await s3Failure(p)).name;

async function keys(): Promise<string[]> {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
  return (r.Contents ?? []).map((o) => o.Key!);
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-lifecycle-"));
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  for (const k of ["logs/a.log", "logs/b.log", "logs/big.log", "data/keep.bin"])
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: k === "logs/big.log" ? new Uint8Array(20_000) : "x" }));
});

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("without rules: NoSuchLifecycleConfiguration; unsupported rules are refused", async () => {
  expect(await s3Error(s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET })))).toBe("NoSuchLifecycleConfiguration");
  const transition = s3.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: BUCKET,
      LifecycleConfiguration: { Rules: [{ ID: "t", Status: "Enabled", Filter: { Prefix: "" }, Transitions: [{ Days: 30, StorageClass: "GLACIER" }] }] },
    }),
  );
  expect(await s3Error(transition)).toBe("NotImplemented");
  expect(await s3Error(s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET })))).toBe("NoSuchLifecycleConfiguration");
});

test("awscli sets rules; a past expiry date deletes what the rule matches at the next pass", async () => {
  const rules = {
    Rules: [
      { ID: "old-logs", Status: "Enabled", Filter: { And: { Prefix: "logs/", ObjectSizeLessThan: 10_000 } }, Expiration: { Date: "2020-01-01T00:00:00Z" } },
      { ID: "stale-uploads", Status: "Enabled", Filter: { Prefix: "" }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } },
    ],
  };
  writeFileSync(join(tmp, "lifecycle.json"), JSON.stringify(rules));
  const aws = awsCli(server, tmp);
  const put = await aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", BUCKET, "--lifecycle-configuration", `file://${join(tmp, "lifecycle.json")}`);
  expect(put.stderr).toBe("");
  expect(put.code).toBe(0);
  const got = JSON.parse((await aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", BUCKET)).stdout);
  expect(got.Rules).toEqual([
    { ID: "old-logs", Status: "Enabled", Filter: { And: { Prefix: "logs/", ObjectSizeLessThan: 10_000 } }, Expiration: { Date: "2020-01-01T00:00:00+00:00" } },
    { ID: "stale-uploads", Status: "Enabled", Filter: { Prefix: "" }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } },
  ]);

  expect(await keys()).toEqual(["data/keep.bin", "logs/a.log", "logs/b.log", "logs/big.log"]);
  const repair = await server.cli("repair", "lifecycle");
  expect(repair.code).toBe(0);
  await waitFor("expired logs deleted", async () => JSON.stringify(await keys()) === JSON.stringify(["data/keep.bin", "logs/big.log"]), 10_000);
  const workers = JSON.parse((await server.cli("worker", "list", "--json")).stdout) as { name: string; passes: number }[];
  expect(workers.find((w) => w.name === "lifecycle")?.passes).toBeGreaterThanOrEqual(1);
});

test("the SDK round-trips rules; DeleteBucketLifecycle removes them", async () => {
  await s3.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: BUCKET,
      LifecycleConfiguration: { Rules: [{ ID: "thirty-days", Status: "Disabled", Filter: { Prefix: "tmp/" }, Expiration: { Days: 30 } }] },
    }),
  );
  const got = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET }));
  expect(got.Rules).toEqual([{ ID: "thirty-days", Status: "Disabled", Filter: { Prefix: "tmp/" }, Expiration: { Days: 30 } }]);
  await s3.send(new DeleteBucketLifecycleCommand({ Bucket: BUCKET }));
  expect(await s3Error(s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET })))).toBe("NoSuchLifecycleConfiguration");
});

test("rules read back as written: legacy Prefix, Filter, empty Filter, tags, ExpiredObjectDeleteMarker; a rule without ID gets one", async () => {
  const Rules = [
    { ID: "test1/", Expiration: { Days: 31 }, Prefix: "test1/", Status: "Enabled" as const },
    { ID: "marker", Expiration: { ExpiredObjectDeleteMarker: true }, Filter: { Prefix: "foo" }, Status: "Enabled" as const },
    { ID: "empty", Expiration: { ExpiredObjectDeleteMarker: true }, Filter: {}, Status: "Enabled" as const },
    { ID: "tagged", Expiration: { Date: new Date("2020-01-01T00:00:00Z") }, Filter: { Tag: { Key: "class", Value: "scratch" } }, Status: "Enabled" as const },
    { ID: "and-tags", Expiration: { Days: 2 }, Filter: { And: { Prefix: "logs/", Tags: [{ Key: "a", Value: "1" }, { Key: "b", Value: "2" }] } }, Status: "Disabled" as const },
  ];
  await s3.send(new PutBucketLifecycleConfigurationCommand({ Bucket: BUCKET, LifecycleConfiguration: { Rules } }));
  expect((await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET }))).Rules).toEqual(Rules);

  // The tag rule (a date in the past) expires the objects carrying its tag, and only them.
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "scratch-tagged", Body: "x", Tagging: "class=scratch&other=1" }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "scratch-other-value", Body: "x", Tagging: "class=keep" }));
  const before = (await keys()).filter((k) => k !== "scratch-tagged");
  expect((await server.cli("repair", "lifecycle")).code).toBe(0);
  await waitFor("the lifecycle pass", async () => {
    const workers = JSON.parse((await server.cli("worker", "list", "--json")).stdout) as { name: string; passes: number }[];
    return (workers.find((w) => w.name === "lifecycle")?.passes ?? 0) >= 2;
  });
  expect(await keys()).toEqual(before);

  await s3.send(new PutBucketLifecycleConfigurationCommand({ Bucket: BUCKET, LifecycleConfiguration: { Rules: [{ Prefix: "x/", Status: "Enabled", Expiration: { Days: 1 } }] } }));
  const [unnamed] = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: BUCKET }))).Rules!;
  expect(unnamed).toMatchObject({ Prefix: "x/", Status: "Enabled", Expiration: { Days: 1 } });
  expect(unnamed!.ID).toBeString();
  expect(unnamed!.ID!.length).toBeGreaterThan(0);
  await s3.send(new DeleteBucketLifecycleCommand({ Bucket: BUCKET }));
});
