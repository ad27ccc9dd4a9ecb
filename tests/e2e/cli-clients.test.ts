// End to end with command-line S3 clients (Debian's awscli, rclone, s3cmd) and with the
// bunker CLI itself, all against one real server process. Each client creates its own
// bucket, moves files of 0 B to 100 MiB both ways, handles odd keys, syncs a small tree
// up and back down, lists by prefix and deletes everything it made.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import {
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  GetObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import {
  KiB,
  MiB,
  expectOk,
  hashFile,
  run,
  sdkClient,
  writeRandomFile,
  writeS3cmdConfig,
  type RandomFile,
  type RunResult,
} from "../helpers/clients";

const AWS = "/usr/bin/aws";
const RCLONE = "/usr/bin/rclone";
const S3CMD = "/usr/bin/s3cmd";
const SMALL_TIMEOUT = 60_000;
const BIG_TIMEOUT = 120_000;

// Real servers and real clients: bun's 5 s default is too short, and a timed-out test
// makes bun kill every child process, the server included.
setDefaultTimeout(180_000);

let server: TestServer;
let s3: S3Client;
let tmp: string;
let home: string;
const files: Record<"zero" | "small" | "medium" | "big", RandomFile> = {} as never;
let tree: string;
let treeFiles: Map<string, string>; // relative path -> sha256

/** Keys with spaces, unicode and the characters that URL encoders disagree on. */
const SPECIAL_KEYS = ["with space/a b.txt", "é ü/日本 語.txt", "amp&plus+pct%.txt"];

const TREE_PATHS = [
  "root-1.txt",
  "root-2.txt",
  "root 3 with spaces.txt",
  "a/1.txt",
  "a/2.bin",
  "a/&+%.txt",
  "a/b/1.txt",
  "a/b/2.txt",
  "a/b/3.bin",
  "a/b/c/deep-1.txt",
  "a/b/c/deep-2.txt",
  "a/b/c/d/e/deepest.txt",
  "sp ace/f 1.txt",
  "sp ace/f 2.txt",
  "sp ace/inner dir/x.txt",
  "ünï/日本.txt",
  "ünï/ça va.txt",
  "ünï/sub/ß.txt",
  "data/00.dat",
  "data/01.dat",
  "data/02.dat",
  "data/03.dat",
  "data/04.dat",
  "data/05.dat",
  "data/06.dat",
  "data/07.dat",
  "data/08.dat",
  "data/09.dat",
  "empty/zero.txt",
  "multi/nine-mib.bin", // above awscli's and s3cmd's multipart thresholds
];

function baseEnv(): Record<string, string> {
  return { PATH: "/usr/bin:/bin", HOME: home, LANG: "C.UTF-8", LC_ALL: "C.UTF-8", TMPDIR: tmp };
}

function walk(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const rec = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) rec(p);
      else out.set(relative(dir, p), p);
    }
  };
  rec(dir);
  return out;
}

async function treeDigest(dir: string): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  for (const [rel, p] of [...walk(dir)].sort()) digests.set(rel, (await hashFile(p)).sha256);
  return digests;
}

async function bucketKeys(bucket: string, prefix = ""): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(r.Contents ?? []).map((c) => c.Key!));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

async function bucketExists(bucket: string): Promise<boolean> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

async function sdkSha(bucket: string, key: string): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const { hashStream } = await import("../helpers/clients");
  return (await hashStream(r.Body as AsyncIterable<Uint8Array>)).sha256;
}

/** What each client must be able to do; the shared suite below drives them all alike. */
interface CliClient {
  name: string;
  bucket: string;
  mb(): Promise<RunResult>;
  put(local: string, key: string, big?: boolean): Promise<RunResult>;
  get(key: string, local: string, big?: boolean): Promise<RunResult>;
  syncUp(dir: string, prefix: string): Promise<RunResult>;
  syncDown(prefix: string, dir: string): Promise<RunResult>;
  /** True when a second sync of an unchanged tree would transfer nothing. */
  syncUpIsNoop(dir: string, prefix: string): Promise<boolean>;
  /** Non-recursive listing under `prefix` (ending in "/"): names relative to it, "dir/" for prefixes. */
  ls(prefix: string): Promise<string[]>;
  /** Lists the buckets the key sees. */
  lsBuckets(): Promise<string[]>;
  rm(key: string): Promise<RunResult>;
  rmPrefix(prefix: string): Promise<RunResult>;
  /** Removes the bucket and whatever is left in it. */
  rbForce(): Promise<RunResult>;
}

// ---------------------------------------------------------------- awscli
function awsClient(): CliClient {
  const bucket = "cli-aws";
  const configFile = join(tmp, "aws-config");
  writeFileSync(configFile, ["[default]", `region = ${server.region}`, "s3 =", "  addressing_style = path", ""].join("\n"));
  const env = {
    ...baseEnv(),
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: server.region,
    AWS_REGION: server.region,
    AWS_CONFIG_FILE: configFile,
    AWS_SHARED_CREDENTIALS_FILE: join(tmp, "aws-credentials-none"),
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
    AWS_CLI_AUTO_PROMPT: "off",
  };
  const aws = (args: string[], timeoutMs = SMALL_TIMEOUT) =>
    run([AWS, "--endpoint-url", server.endpoint, "--no-cli-pager", ...args], { env, timeoutMs });
  const ok = async (args: string[], timeoutMs = SMALL_TIMEOUT) => expectOk(await aws(args, timeoutMs), `aws ${args.join(" ")}`);
  return {
    name: "awscli",
    bucket,
    mb: () => ok(["s3", "mb", `s3://${bucket}`]),
    put: (local, key, big) => ok(["s3", "cp", "--only-show-errors", local, `s3://${bucket}/${key}`], big ? BIG_TIMEOUT : SMALL_TIMEOUT),
    get: (key, local, big) => ok(["s3", "cp", "--only-show-errors", `s3://${bucket}/${key}`, local], big ? BIG_TIMEOUT : SMALL_TIMEOUT),
    syncUp: (dir, prefix) => ok(["s3", "sync", "--only-show-errors", "--delete", dir, `s3://${bucket}/${prefix}`]),
    syncDown: (prefix, dir) => ok(["s3", "sync", "--only-show-errors", "--delete", `s3://${bucket}/${prefix}`, dir]),
    syncUpIsNoop: async (dir, prefix) => {
      const r = await ok(["s3", "sync", "--dryrun", dir, `s3://${bucket}/${prefix}`]);
      return r.stdout.trim() === "";
    },
    ls: async (prefix) => {
      const r = await ok(["s3", "ls", `s3://${bucket}/${prefix}`]);
      return r.stdout
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => {
          const pre = /^\s*PRE (.*)$/.exec(l);
          if (pre) return pre[1]!;
          const obj = /^\S+ \S+\s+\d+ (.*)$/.exec(l);
          if (!obj) throw new Error(`unexpected aws s3 ls line: ${l}`);
          return obj[1]!;
        });
    },
    lsBuckets: async () => {
      const r = await ok(["s3api", "list-buckets", "--output", "json"]);
      return (JSON.parse(r.stdout).Buckets as { Name: string }[]).map((b) => b.Name);
    },
    rm: (key) => ok(["s3", "rm", "--only-show-errors", `s3://${bucket}/${key}`]),
    rmPrefix: (prefix) => ok(["s3", "rm", "--only-show-errors", "--recursive", `s3://${bucket}/${prefix}`]),
    rbForce: () => ok(["s3", "rb", "--force", `s3://${bucket}`]),
  };
}

// ---------------------------------------------------------------- rclone
function rcloneClient(): CliClient {
  const bucket = "cli-rclone";
  const env = {
    ...baseEnv(),
    RCLONE_CONFIG: join(tmp, "rclone-none.conf"),
    RCLONE_CONFIG_BK_TYPE: "s3",
    RCLONE_CONFIG_BK_PROVIDER: "Other",
    RCLONE_CONFIG_BK_ENV_AUTH: "false",
    RCLONE_CONFIG_BK_ENDPOINT: server.endpoint,
    RCLONE_CONFIG_BK_ACCESS_KEY_ID: server.accessKeyId,
    RCLONE_CONFIG_BK_SECRET_ACCESS_KEY: server.secretAccessKey,
    RCLONE_CONFIG_BK_REGION: server.region,
    RCLONE_CONFIG_BK_FORCE_PATH_STYLE: "true",
  };
  // Multipart from 16 MiB up, so the 100 MiB file goes in parts; fail fast on errors.
  const common = ["--retries", "1", "--low-level-retries", "1", "--s3-upload-cutoff", "16M", "--s3-chunk-size", "8M"];
  const rc = (args: string[], timeoutMs = SMALL_TIMEOUT) => run([RCLONE, ...common, ...args], { env, timeoutMs });
  const ok = async (args: string[], timeoutMs = SMALL_TIMEOUT) => expectOk(await rc(args, timeoutMs), `rclone ${args.join(" ")}`);
  const remote = (path: string) => `bk:${bucket}/${path}`;
  return {
    name: "rclone",
    bucket,
    mb: () => ok(["mkdir", `bk:${bucket}`]),
    put: (local, key, big) => ok(["copyto", local, remote(key)], big ? BIG_TIMEOUT : SMALL_TIMEOUT),
    get: (key, local, big) => ok(["copyto", remote(key), local], big ? BIG_TIMEOUT : SMALL_TIMEOUT),
    syncUp: (dir, prefix) => ok(["sync", dir, remote(prefix)]),
    syncDown: (prefix, dir) => ok(["sync", remote(prefix), dir]),
    syncUpIsNoop: async (dir, prefix) => {
      // `check` compares sizes and MD5s (from the ETag or the stored md5chksum metadata).
      const r = await rc(["check", dir, remote(prefix)]);
      if (r.code !== 0) throw new Error(`rclone check: ${r.stderr}`);
      const dry = await ok(["sync", "--dry-run", "-v", dir, remote(prefix)]);
      return !/Skipped (copy|delete|update)/.test(dry.stderr);
    },
    ls: async (prefix) => {
      const r = await ok(["lsf", remote(prefix)]);
      return r.stdout.split("\n").filter((l) => l !== "");
    },
    lsBuckets: async () => {
      const r = await ok(["lsf", "bk:"]);
      return r.stdout
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.replace(/\/$/, ""));
    },
    rm: (key) => ok(["deletefile", remote(key)]),
    rmPrefix: (prefix) => ok(["delete", remote(prefix)]),
    rbForce: () => ok(["purge", `bk:${bucket}`]),
  };
}

// ---------------------------------------------------------------- s3cmd
function s3cmdClient(): CliClient {
  const bucket = "cli-s3cmd";
  const cfg = writeS3cmdConfig(server, tmp, ["signature_v2 = False", "check_ssl_certificate = False", "multipart_chunk_size_mb = 8"]);
  const env = baseEnv();
  const sc = (args: string[], timeoutMs = SMALL_TIMEOUT) => run([S3CMD, "-c", cfg, "--no-progress", ...args], { env, timeoutMs });
  const ok = async (args: string[], timeoutMs = SMALL_TIMEOUT) => expectOk(await sc(args, timeoutMs), `s3cmd ${args.join(" ")}`);
  const uri = (path: string) => `s3://${bucket}/${path}`;
  return {
    name: "s3cmd",
    bucket,
    mb: () => ok(["mb", `s3://${bucket}`]),
    put: (local, key, big) => ok(["put", local, uri(key)], big ? BIG_TIMEOUT : SMALL_TIMEOUT),
    get: (key, local, big) => ok(["get", "--force", uri(key), local], big ? BIG_TIMEOUT : SMALL_TIMEOUT),
    syncUp: (dir, prefix) => ok(["sync", "--delete-removed", `${dir}/`, uri(prefix)]),
    syncDown: (prefix, dir) => ok(["sync", "--delete-removed", uri(prefix), `${dir}/`]),
    syncUpIsNoop: async (dir, prefix) => {
      const r = await ok(["sync", "--dry-run", "--delete-removed", `${dir}/`, uri(prefix)]);
      return !/^(upload|delete):/m.test(r.stdout);
    },
    ls: async (prefix) => {
      const r = await ok(["ls", uri(prefix)]);
      const base = uri(prefix);
      return r.stdout
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => {
          const at = l.indexOf("s3://");
          if (at < 0) throw new Error(`unexpected s3cmd ls line: ${l}`);
          const full = l.slice(at);
          if (!full.startsWith(base)) throw new Error(`s3cmd ls line outside ${base}: ${l}`);
          return full.slice(base.length);
        });
    },
    lsBuckets: async () => {
      const r = await ok(["ls"]);
      return r.stdout
        .split("\n")
        .filter((l) => l.includes("s3://"))
        .map((l) => l.slice(l.indexOf("s3://") + 5));
    },
    rm: (key) => ok(["del", uri(key)]),
    rmPrefix: (prefix) => ok(["del", "--recursive", "--force", uri(prefix)]),
    rbForce: () => ok(["rb", "--recursive", "--force", `s3://${bucket}`]),
  };
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-cli-"));
  home = join(tmp, "home");
  mkdirSync(home);
  files.zero = writeRandomFile(join(tmp, "src", "zero.bin"), 0);
  files.small = writeRandomFile(join(tmp, "src", "small.bin"), 2 * KiB);
  files.medium = writeRandomFile(join(tmp, "src", "medium.bin"), 5 * MiB);
  files.big = writeRandomFile(join(tmp, "src", "big.bin"), 100 * MiB);
  tree = join(tmp, "tree");
  let i = 0;
  for (const rel of TREE_PATHS) {
    const size = rel === "multi/nine-mib.bin" ? 9 * MiB : rel.startsWith("empty/") ? 0 : 100 + ((i++ * 7919) % (64 * KiB));
    writeRandomFile(join(tree, rel), size);
  }
  // Old enough that no sync mistakes a fresh upload for a newer local file.
  const past = new Date(Date.now() - 3600_000);
  for (const p of walk(tree).values()) utimesSync(p, past, past);
  treeFiles = await treeDigest(tree);
  expect(treeFiles.size).toBe(TREE_PATHS.length);
});

afterAll(async () => {
  s3?.destroy();
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function clientSuite(make: () => CliClient): void {
  let c: CliClient;
  const name = make.name.replace(/Client$/, "");
  describe(name, () => {
    beforeAll(() => {
      c = make();
    });

    test("make bucket; it is listed", async () => {
      await c.mb();
      expect(await bucketExists(c.bucket)).toBe(true);
      expect(await c.lsBuckets()).toContain(c.bucket);
    });

    test("upload and download 0 B, 2 KiB, 5 MiB and 100 MiB", async () => {
      const out = join(tmp, `out-${c.name}`);
      mkdirSync(out, { recursive: true });
      for (const [label, f] of Object.entries(files)) {
        const big = f.size >= 50 * MiB;
        const key = `sizes/${label}.bin`;
        await c.put(f.path, key, big);
        const head = await s3.send(new HeadObjectCommand({ Bucket: c.bucket, Key: key }));
        expect(head.ContentLength).toBe(f.size);
        if (!head.ETag!.includes("-")) expect(head.ETag).toBe(`"${f.md5}"`);
        const local = join(out, `${label}.bin`);
        await c.get(key, local, big);
        expect(await hashFile(local)).toEqual({ size: f.size, sha256: f.sha256 });
        rmSync(local, { force: true });
      }
      // The SDK reads what the client wrote, byte for byte.
      expect(await sdkSha(c.bucket, "sizes/medium.bin")).toBe(files.medium.sha256);
    });

    test("keys with spaces, unicode and &+%", async () => {
      const out = join(tmp, `special-${c.name}`);
      mkdirSync(out, { recursive: true });
      for (const key of SPECIAL_KEYS) await c.put(files.small.path, `special/${key}`);
      expect((await bucketKeys(c.bucket, "special/")).sort()).toEqual(SPECIAL_KEYS.map((k) => `special/${k}`).sort());
      for (const [i, key] of SPECIAL_KEYS.entries()) {
        const local = join(out, `f${i}`);
        await c.get(`special/${key}`, local);
        expect((await hashFile(local)).sha256).toBe(files.small.sha256);
      }
      // And an object the SDK wrote under such a key reads back through the client.
      await s3.send(new PutObjectCommand({ Bucket: c.bucket, Key: "special/sdk é&+% x.txt", Body: "from the sdk" }));
      await c.get("special/sdk é&+% x.txt", join(out, "sdk.txt"));
      expect(await Bun.file(join(out, "sdk.txt")).text()).toBe("from the sdk");
    });

    test("sync a tree up and back down", async () => {
      await c.syncUp(tree, "tree/");
      expect((await bucketKeys(c.bucket, "tree/")).sort()).toEqual([...treeFiles.keys()].map((k) => `tree/${k}`).sort());
      expect(await sdkSha(c.bucket, "tree/ünï/日本.txt")).toBe(treeFiles.get("ünï/日本.txt")!);
      expect(await c.syncUpIsNoop(tree, "tree/")).toBe(true);

      const down = join(tmp, `down-${c.name}`);
      mkdirSync(down, { recursive: true });
      await c.syncDown("tree/", down);
      expect(await treeDigest(down)).toEqual(treeFiles);

      // Change one file, drop another, sync again: the bucket follows.
      const changed = join(tmp, `tree-${c.name}`);
      mkdirSync(changed);
      for (const [rel, p] of walk(tree)) {
        mkdirSync(join(changed, rel, ".."), { recursive: true });
        writeFileSync(join(changed, rel), Bun.file(p).size === 0 ? "" : new Uint8Array(await Bun.file(p).arrayBuffer()));
        const st = statSync(p);
        utimesSync(join(changed, rel), st.atime, st.mtime);
      }
      rmSync(join(changed, "a/b/2.txt"));
      writeFileSync(join(changed, "root-1.txt"), "changed content, and longer than before ".repeat(100));
      await c.syncUp(changed, "tree/");
      const keys = await bucketKeys(c.bucket, "tree/");
      expect(keys).not.toContain("tree/a/b/2.txt");
      expect(keys.length).toBe(treeFiles.size - 1);
      expect(await sdkSha(c.bucket, "tree/root-1.txt")).toBe((await hashFile(join(changed, "root-1.txt"))).sha256);
      await c.syncDown("tree/", down);
      expect(await treeDigest(down)).toEqual(await treeDigest(changed));
      rmSync(changed, { recursive: true, force: true });
      rmSync(down, { recursive: true, force: true });
    });

    test("list with prefixes", async () => {
      expect((await c.ls("tree/a/")).sort()).toEqual(["&+%.txt", "1.txt", "2.bin", "b/"].sort());
      expect((await c.ls("tree/a/b/")).sort()).toEqual(["1.txt", "3.bin", "c/"].sort());
      expect((await c.ls("tree/ünï/")).sort()).toEqual(["sub/", "ça va.txt", "日本.txt"].sort());
      expect((await c.ls("tree/sp ace/")).sort()).toEqual(["f 1.txt", "f 2.txt", "inner dir/"].sort());
      const top = await c.ls("");
      expect(top.sort()).toEqual(["sizes/", "special/", "tree/"].sort());
    });

    test("delete one object, a prefix, then the bucket", async () => {
      await c.rm("special/amp&plus+pct%.txt");
      expect(await bucketKeys(c.bucket, "special/amp")).toEqual([]);
      await c.rm("sizes/big.bin");
      expect(await bucketKeys(c.bucket, "sizes/big")).toEqual([]);
      await c.rmPrefix("tree/");
      expect(await bucketKeys(c.bucket, "tree/")).toEqual([]);
      expect((await bucketKeys(c.bucket)).length).toBeGreaterThan(0);
      await c.rbForce();
      expect(await bucketExists(c.bucket)).toBe(false);
    });
  });
}

clientSuite(awsClient);
clientSuite(rcloneClient);
clientSuite(s3cmdClient);

describe("awscli s3api", () => {
  test("head-object, multipart ETag, list-objects-v2 with a delimiter, errors", async () => {
    const bucket = "cli-aws-api";
    const configFile = join(tmp, "aws-config-api");
    writeFileSync(configFile, ["[default]", `region = ${server.region}`, "s3 =", "  addressing_style = path", "  multipart_threshold = 8MB", "  multipart_chunksize = 8MB", ""].join("\n"));
    const env = {
      ...baseEnv(),
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_DEFAULT_REGION: server.region,
      AWS_CONFIG_FILE: configFile,
      AWS_SHARED_CREDENTIALS_FILE: join(tmp, "aws-credentials-none"),
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_PAGER: "",
    };
    const aws = (...args: string[]) => run([AWS, "--endpoint-url", server.endpoint, "--output", "json", ...args], { env, timeoutMs: SMALL_TIMEOUT });
    expectOk(await aws("s3api", "create-bucket", "--bucket", bucket), "create-bucket");
    expectOk(await aws("s3", "cp", "--only-show-errors", files.medium.path, `s3://${bucket}/dir/medium.bin`), "cp");
    const nine = writeRandomFile(join(tmp, "nine.bin"), 9 * MiB);
    expectOk(await aws("s3", "cp", "--only-show-errors", nine.path, `s3://${bucket}/dir/sub/nine.bin`), "cp multipart");
    const head = JSON.parse(expectOk(await aws("s3api", "head-object", "--bucket", bucket, "--key", "dir/sub/nine.bin"), "head").stdout);
    expect(head.ContentLength).toBe(9 * MiB);
    expect(head.ETag).toMatch(/-2"$/);
    const list = JSON.parse(
      expectOk(await aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "dir/", "--delimiter", "/"), "list").stdout,
    );
    expect(list.Contents.map((c: { Key: string }) => c.Key)).toEqual(["dir/medium.bin"]);
    expect(list.CommonPrefixes.map((p: { Prefix: string }) => p.Prefix)).toEqual(["dir/sub/"]);
    const missing = await aws("s3api", "head-object", "--bucket", bucket, "--key", "nope");
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("404");
    const notEmpty = await aws("s3api", "delete-bucket", "--bucket", bucket);
    expect(notEmpty.code).not.toBe(0);
    expect(notEmpty.stderr).toContain("BucketNotEmpty");
    const badEnv = { ...env, AWS_SECRET_ACCESS_KEY: server.secretAccessKey.replace(/.$/, (ch) => (ch === "0" ? "1" : "0")) };
    const bad = await run([AWS, "--endpoint-url", server.endpoint, "s3", "ls", `s3://${bucket}`], { env: badEnv, timeoutMs: SMALL_TIMEOUT });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("SignatureDoesNotMatch");
    expectOk(await aws("s3", "rb", "--force", `s3://${bucket}`), "rb");
    rmSync(nine.path, { force: true });
  });
});

describe("bunker CLI against the server", () => {
  const cliJson = async <T>(...args: string[]): Promise<T> => {
    const r = await server.cli(...args, "--json");
    if (r.code !== 0) throw new Error(`bunker ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  test("keys and buckets: create, allow, info, list, use, delete", async () => {
    const key = await cliJson<{ accessKeyId: string; secretAccessKey: string; name: string }>("key", "create", "cli-e2e-key");
    expect(key.accessKeyId).toMatch(/^GK[0-9a-f]{24}$/);
    expect(key.secretAccessKey).toMatch(/^[0-9a-f]{64}$/);
    expect(key.name).toBe("cli-e2e-key");

    const bucket = await cliJson<{ id: string; globalAliases: string[] }>("bucket", "create", "cli-e2e-bucket");
    expect(bucket.globalAliases).toEqual(["cli-e2e-bucket"]);
    expect(bucket.id).toMatch(/^[0-9a-f]{64}$/);

    // Before the grant, the new key is refused.
    const k = sdkClient(server, { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey });
    try {
      const denied = await k.send(new PutObjectCommand({ Bucket: "cli-e2e-bucket", Key: "x", Body: "x" })).then(
        () => 200,
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode,
      );
      expect(denied).toBe(403);

      const allowed = await cliJson<{ keys: { accessKeyId: string; permissions: { read: boolean; write: boolean; owner: boolean } }[] }>(
        "bucket",
        "allow",
        "--read",
        "--write",
        "cli-e2e-bucket",
        "--key",
        key.accessKeyId,
      );
      expect(allowed.keys.find((x) => x.accessKeyId === key.accessKeyId)?.permissions).toEqual({ read: true, write: true, owner: false });

      // The human-readable form works too.
      const text = await server.cli("bucket", "allow", "--read", "cli-e2e-bucket", "--key", "cli-e2e-key");
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(key.accessKeyId);

      await k.send(new PutObjectCommand({ Bucket: "cli-e2e-bucket", Key: "hello.txt", Body: "hello from the new key" }));
      const got = await k.send(new GetObjectCommand({ Bucket: "cli-e2e-bucket", Key: "hello.txt" }));
      expect(await got.Body!.transformToString()).toBe("hello from the new key");

      const info = await cliJson<{ id: string; objects: number; bytes: number; keys: { accessKeyId: string }[] }>(
        "bucket",
        "info",
        "cli-e2e-bucket",
      );
      expect(info.id).toBe(bucket.id);
      expect(info.objects).toBe(1);
      expect(info.bytes).toBe(22);
      expect(info.keys.map((x) => x.accessKeyId)).toContain(key.accessKeyId);
      const infoText = await server.cli("bucket", "info", "cli-e2e-bucket");
      expect(infoText.code).toBe(0);
      expect(infoText.stdout).toContain(bucket.id);

      const list = await cliJson<{ id: string; globalAliases: string[] }[]>("bucket", "list");
      expect(list.find((b) => b.id === bucket.id)?.globalAliases).toEqual(["cli-e2e-bucket"]);

      const kinfo = await cliJson<{ secretAccessKey: string | null; buckets: { id: string; permissions: { read: boolean; write: boolean } }[] }>(
        "key",
        "info",
        key.accessKeyId,
        "--show-secret",
      );
      expect(kinfo.secretAccessKey).toBe(key.secretAccessKey);
      expect(kinfo.buckets.find((b) => b.id === bucket.id)?.permissions).toMatchObject({ read: true, write: true });
      const hidden = await cliJson<{ secretAccessKey: string | null }>("key", "info", "cli-e2e-key");
      expect(hidden.secretAccessKey ?? null).toBeNull();
      const hiddenText = await server.cli("key", "info", "cli-e2e-key");
      expect(hiddenText.stdout).not.toContain(key.secretAccessKey);

      // A non-empty bucket is not deleted.
      const notEmpty = await server.cli("bucket", "delete", "cli-e2e-bucket", "--yes");
      expect(notEmpty.code).not.toBe(0);
      expect(notEmpty.stderr.trim().split("\n").length).toBe(1);

      // Deleting needs --yes.
      const noYes = await server.cli("bucket", "delete", "cli-e2e-bucket");
      expect(noYes.code).not.toBe(0);

      await k.send(new (await import("@aws-sdk/client-s3")).DeleteObjectCommand({ Bucket: "cli-e2e-bucket", Key: "hello.txt" }));
      const del = await server.cli("bucket", "delete", "cli-e2e-bucket", "--yes");
      expect(del.code).toBe(0);
      expect(await bucketExists("cli-e2e-bucket")).toBe(false);
      const gone = await server.cli("bucket", "info", "cli-e2e-bucket");
      expect(gone.code).not.toBe(0);

      const kdel = await server.cli("key", "delete", key.accessKeyId, "--yes");
      expect(kdel.code).toBe(0);
      const kgone = await server.cli("key", "info", key.accessKeyId);
      expect(kgone.code).not.toBe(0);
      // The deleted key no longer authenticates.
      const after = await k.send(new (await import("@aws-sdk/client-s3")).ListBucketsCommand({})).then(
        () => "ok",
        (e: { name: string }) => e.name,
      );
      expect(after).toBe("InvalidAccessKeyId");
    } finally {
      k.destroy();
    }
  });

  test("a wrong admin token is rejected", async () => {
    const { readFileSync } = await import("node:fs");
    const cfg = readFileSync(server.configPath, "utf8").replace(/admin_token = ".*"/, 'admin_token = "wrong-token"');
    expect(cfg).toContain("wrong-token");
    const badCfg = join(tmp, "bad-token.toml");
    writeFileSync(badCfg, cfg);
    const main = join(import.meta.dir, "..", "..", "src", "main.ts");
    const r = await run([process.execPath, main, "-c", badCfg, "bucket", "list"], { env: { ...process.env }, timeoutMs: SMALL_TIMEOUT });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(r.stderr).toMatch(/^error: /);
    expect(r.stdout).toBe("");
    const direct = await fetch(`http://127.0.0.1:${server.adminPort}/v2/ListBuckets`, { headers: { authorization: "Bearer wrong-token" } });
    expect([401, 403]).toContain(direct.status);
    const none = await fetch(`http://127.0.0.1:${server.adminPort}/v2/ListBuckets`);
    expect([401, 403]).toContain(none.status);
  });
});

// Every client removed what it made.
test("no client bucket remains", async () => {
  for (const b of ["cli-aws", "cli-rclone", "cli-s3cmd", "cli-aws-api", "cli-e2e-bucket"]) {
    expect(await bucketExists(b)).toBe(false);
  }
});
