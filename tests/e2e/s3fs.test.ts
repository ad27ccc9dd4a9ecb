// s3fs (Debian's FUSE file system on S3) mounting a bucket of a real server: files written
// small and large (a multipart upload), read back after a remount, a partial overwrite (parts
// copied and uploaded), renames (copy + delete, the large one a multipart copy), listings,
// deletes, unmount. Every file operation runs in a child process with a deadline, so a hung
// mount fails the test instead of blocking it. Skips when FUSE is not usable here.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { KiB, MiB, expectOk, hashFile, hashStream, run, sdkClient, type RunResult } from "../helpers/clients";
import { grown, s3Counts, serverErrors } from "../helpers/metrics";
import { startServer, type TestServer } from "../helpers/server";
import { writeSeededFile } from "../helpers/seeded-files";

const S3FS = "/usr/bin/s3fs";
const FUSE_DEVICE = "/dev/fuse";
const absent = !existsSync(S3FS) ? `${S3FS} is absent (apt-get install -y s3fs)` : !existsSync(FUSE_DEVICE) ? `${FUSE_DEVICE} is absent: no FUSE here` : "";
if (absent) console.warn(`SKIPPED: s3fs: ${absent}`);

const BUCKET = "s3fs-bucket";
/** How long a mount may take to appear; s3fs checks the bucket first. */
const MOUNT_TIMEOUT_MS = 20_000;
/** One file operation through the mount (at most 20 MiB over loopback). */
const FS_OP_TIMEOUT_MS = 60_000;
/** s3fs's smallest part (MB): the 20 MiB file is uploaded and copied in parts. */
const PART_MB = 5;
const BIG = 20 * MiB;

// Real server and real client: bun's 5 s default is too short, and a timed-out test makes
// bun kill every child process, the server included.
setDefaultTimeout(180_000);

let server: TestServer;
let s3: S3Client;
let tmp: string;
let mnt: string;
let s3fsLog: string;
let s3fsProc: Subprocess | undefined;
/** Why the tests do not run, when the mount failed because FUSE is not usable here. */
let fuseUnusable = "";

const ENV = { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" };
/** s3fs pulls in fuse (fusermount) or fuse3 (fusermount3); root can always umount. */
const UNMOUNT = existsSync("/bin/fusermount") ? ["fusermount", "-u"] : existsSync("/bin/fusermount3") ? ["fusermount3", "-u"] : ["umount"];

function mounted(): boolean {
  return readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .some((line) => line.split(" ")[1] === mnt);
}

/** Mounts the bucket with s3fs in the foreground (our child); says why on failure. */
async function mount(): Promise<{ code: number | null; stderr: string; log: string } | undefined> {
  const passwd = join(tmp, "passwd-s3fs");
  writeFileSync(passwd, `${server.accessKeyId}:${server.secretAccessKey}\n`, { mode: 0o600 });
  const opts = [
    `url=http://127.0.0.1:${server.s3Port}`,
    "use_path_request_style",
    `endpoint=${server.region}`, // s3fs's name for the SigV4 region
    `passwd_file=${passwd}`,
    "dbglevel=info",
    `logfile=${s3fsLog}`,
    `multipart_size=${PART_MB}`,
    `multipart_copy_size=${PART_MB}`,
    "multipart_threshold=10",
    "retries=1",
    "connect_timeout=10",
    "readwrite_timeout=30",
  ];
  const proc = Bun.spawn([S3FS, BUCKET, mnt, "-f", "-o", opts.join(",")], { env: ENV, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  s3fsProc = proc;
  let stderr = "";
  void (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) stderr += new TextDecoder().decode(chunk);
  })();
  const deadline = Date.now() + MOUNT_TIMEOUT_MS;
  while (!mounted()) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      await proc.exited;
      s3fsProc = undefined;
      await Bun.sleep(50); // the rest of stderr
      return { code: proc.exitCode, stderr, log: existsSync(s3fsLog) ? readFileSync(s3fsLog, "utf8").slice(-2000) : "" };
    }
    await Bun.sleep(100);
  }
  return undefined;
}

/** Unmounts and waits for our s3fs process to end. */
async function unmount(): Promise<void> {
  if (mounted()) expectOk(await run([...UNMOUNT, mnt], { env: ENV, timeoutMs: FS_OP_TIMEOUT_MS }), UNMOUNT.join(" "));
  const proc = s3fsProc;
  s3fsProc = undefined;
  if (!proc) return;
  const ended = await Promise.race([proc.exited.then(() => true), Bun.sleep(FS_OP_TIMEOUT_MS).then(() => false)]);
  if (!ended) proc.kill("SIGKILL");
  expect(ended).toBe(true);
}

async function sh(...cmd: string[]): Promise<RunResult> {
  return expectOk(await run(cmd, { env: ENV, timeoutMs: FS_OP_TIMEOUT_MS }), cmd.join(" "));
}

async function sha256Through(path: string): Promise<string> {
  return (await sh("sha256sum", path)).stdout.split(" ")[0]!;
}

async function sha256Of(key: string): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return (await hashStream(r.Body as AsyncIterable<Uint8Array>)).sha256;
}

async function keys(): Promise<string[]> {
  const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
  const r = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
  return (r.Contents ?? []).map((c) => c.Key!).sort();
}

/** True when the test may run; says why not otherwise. */
function usable(): boolean {
  if (fuseUnusable) console.warn(`SKIPPED: s3fs: ${fuseUnusable}`);
  return !fuseUnusable;
}

beforeAll(async () => {
  if (absent) return;
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-s3fs-"));
  mnt = join(tmp, "mnt");
  mkdirSync(mnt);
  s3fsLog = join(tmp, "s3fs.log");
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "from-sdk/hello.txt", Body: "hello from the sdk\n" }));
  const failure = await mount();
  if (failure === undefined) return;
  // Only a FUSE that cannot be used (no module, no permission, a container without the
  // device: libfuse's and fusermount's own messages) skips; any other failure to mount fails.
  const fuseMessage = /^(fuse|fusermount3?): .*$/m.exec(failure.stderr);
  if (fuseMessage) fuseUnusable = `mounting failed, FUSE is not usable here: ${fuseMessage[0]}`;
  else throw new Error(`s3fs could not mount the bucket (exit ${failure.code}):\n${failure.stderr}\n${failure.log}`);
});

afterAll(async () => {
  if (mnt && mounted()) {
    const r = await run([...UNMOUNT, mnt], { env: ENV, timeoutMs: FS_OP_TIMEOUT_MS });
    if (r.code !== 0) await run(["umount", "-l", mnt], { env: ENV, timeoutMs: FS_OP_TIMEOUT_MS });
  }
  s3fsProc?.kill("SIGKILL");
  s3?.destroy();
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("s3fs", () => {
  const small = () => join(tmp, "local", "small.txt");
  const big = () => join(tmp, "local", "big.bin");
  let bigSha = "";

  test.skipIf(!!absent)("mounts; an object the SDK wrote is listed and read", async () => {
    if (!usable()) return;
    expect((await sh("ls", "-A", mnt)).stdout.trim().split("\n")).toEqual(["from-sdk"]);
    expect((await sh("ls", "-A", join(mnt, "from-sdk"))).stdout.trim()).toBe("hello.txt");
    expect((await sh("cat", join(mnt, "from-sdk", "hello.txt"))).stdout).toBe("hello from the sdk\n");
  });

  test.skipIf(!!absent)("writes a small file and a 20 MiB one (multipart); after a remount they read back the same", async () => {
    if (!usable()) return;
    const smallFile = writeSeededFile(small(), 3 * KiB + 7, 31);
    const bigFile = writeSeededFile(big(), BIG, 32);
    bigSha = bigFile.sha256;
    const before = await s3Counts(server);
    await sh("cp", smallFile.path, join(mnt, "small.txt"));
    await sh("cp", bigFile.path, join(mnt, "big.bin"));
    const used = grown(before.requests, (await s3Counts(server)).requests);
    expect(used.CompleteMultipartUpload).toBe(1);
    expect(used.UploadPart).toBeGreaterThanOrEqual(2);
    expect(await sha256Of("small.txt")).toBe(smallFile.sha256);
    expect(await sha256Of("big.bin")).toBe(bigFile.sha256);

    // From the server, not from the kernel's page cache.
    await unmount();
    const failure = await mount();
    expect(failure).toBeUndefined();
    expect(await sha256Through(join(mnt, "small.txt"))).toBe(smallFile.sha256);
    expect(await sha256Through(join(mnt, "big.bin"))).toBe(bigFile.sha256);
    const listing = (await sh("ls", "-l", mnt)).stdout;
    expect(listing).toMatch(new RegExp(`\\s${BIG}\\s.*\\sbig\\.bin\\n`));
    expect(listing).toMatch(/\s3079\s.*\ssmall\.txt\n/);
  });

  test.skipIf(!!absent)("overwriting 1 MiB inside the 20 MiB file re-sends only that part and copies the rest", async () => {
    if (!usable()) return;
    const patch = writeSeededFile(join(tmp, "local", "patch.bin"), 1 * MiB, 33);
    // At a part boundary: s3fs 1.90 (Debian 12) otherwise sends a copied part under 5 MiB
    // before the changed one, which S3 refuses with EntityTooSmall (fixed in s3fs 1.91).
    const at = 2 * PART_MB;
    const dd = (target: string) => sh("dd", `if=${patch.path}`, `of=${target}`, "bs=1M", `seek=${at}`, "conv=notrunc", "status=none");
    await dd(big());
    const before = await s3Counts(server);
    await dd(join(mnt, "big.bin")); // s3fs sends the file on close
    const used = grown(before.requests, (await s3Counts(server)).requests);
    expect(used.UploadPartCopy).toBe(at / PART_MB); // [0, 5) and [5, 10) MiB
    expect(used.UploadPart).toBeGreaterThanOrEqual(1); // [10, 20) MiB
    const expected = (await hashFile(big())).sha256;
    expect(expected).not.toBe(bigSha);
    expect(await sha256Of("big.bin")).toBe(expected);
    bigSha = expected;
  });

  test.skipIf(!!absent)("mkdir and renames: copy then delete, the 20 MiB file as a multipart copy", async () => {
    if (!usable()) return;
    await sh("mkdir", join(mnt, "dir"));
    const before = await s3Counts(server);
    await sh("mv", join(mnt, "big.bin"), join(mnt, "dir", "big renamed.bin"));
    const used = grown(before.requests, (await s3Counts(server)).requests);
    expect(used.UploadPartCopy).toBe(BIG / (PART_MB * MiB));
    expect(used.DeleteObject).toBeGreaterThanOrEqual(1);
    await sh("mv", join(mnt, "small.txt"), join(mnt, "dir", "small.txt"));
    expect((await sh("ls", "-A", mnt)).stdout.trim().split("\n").sort()).toEqual(["dir", "from-sdk"]);
    expect((await sh("ls", "-A", join(mnt, "dir"))).stdout.trim().split("\n").sort()).toEqual(["big renamed.bin", "small.txt"]);
    expect(await keys()).toEqual(["dir/", "dir/big renamed.bin", "dir/small.txt", "from-sdk/hello.txt"]);
    expect(await sha256Of("dir/big renamed.bin")).toBe(bigSha);
    expect(await sha256Through(join(mnt, "dir", "small.txt"))).toBe((await hashFile(small())).sha256);
  });

  test.skipIf(!!absent)("deletes files and directories; unmounts; nothing failed on the server", async () => {
    if (!usable()) return;
    await sh("rm", join(mnt, "dir", "big renamed.bin"), join(mnt, "dir", "small.txt"), join(mnt, "from-sdk", "hello.txt"));
    await sh("rmdir", join(mnt, "dir"));
    expect(await keys()).not.toContain("dir/small.txt");
    expect((await keys()).filter((k) => !k.endsWith("/"))).toEqual([]);
    await unmount();
    expect(mounted()).toBe(false);
    expect(serverErrors(await s3Counts(server))).toEqual({});
    // s3fs logs a refused request as an error (its existence probes' 404s are only info).
    expect(readFileSync(s3fsLog, "utf8").split("\n").filter((l) => /\[(ERR|CRT)\]/.test(l))).toEqual([]);
  });
});
