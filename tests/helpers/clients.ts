// Helpers shared by the end-to-end tests that drive real S3 clients: random files written
// and hashed in one streaming pass, stream hashing, an SDK client for a test server, and
// a bounded child-process runner.
import { closeSync, createReadStream, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import type { TestServer } from "./server";

export const KiB = 1024;
export const MiB = 1024 * 1024;

export interface RandomFile {
  path: string;
  size: number;
  sha256: string;
  md5: string;
}

const WRITE_CHUNK = 1 * MiB;

/** Writes `size` random bytes to `path` (1 MiB at a time) and returns their digests. */
export function writeRandomFile(path: string, size: number): RandomFile {
  return writeFileOf(path, size, (n) => randomBytes(n));
}

/** Writes `size` bytes from `next(n)` (at most 1 MiB a call) to `path`, hashing them on the way. */
export function writeFileOf(path: string, size: number, next: (n: number) => Uint8Array): RandomFile {
  mkdirSync(dirname(path), { recursive: true });
  const sha = createHash("sha256");
  const md5 = createHash("md5");
  const fd = openSync(path, "w");
  try {
    let left = size;
    while (left > 0) {
      const chunk = next(Math.min(WRITE_CHUNK, left));
      sha.update(chunk);
      md5.update(chunk);
      let off = 0;
      while (off < chunk.length) off += writeSync(fd, chunk, off);
      left -= chunk.length;
    }
  } finally {
    closeSync(fd);
  }
  return { path, size, sha256: sha.digest("hex"), md5: md5.digest("hex") };
}

export interface StreamDigest {
  size: number;
  sha256: string;
}

/** Hashes a byte stream (SDK body, fetch body, Node stream) without keeping it. */
export async function hashStream(body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>): Promise<StreamDigest> {
  const h = createHash("sha256");
  let size = 0;
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    h.update(chunk);
    size += chunk.length;
  }
  return { size, sha256: h.digest("hex") };
}

export async function hashFile(path: string): Promise<StreamDigest> {
  return hashStream(createReadStream(path));
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export function md5Hex(data: Uint8Array | string): string {
  return createHash("md5").update(data).digest("hex");
}

/** An SDK v3 client on the test server with default checksum settings and no retries. */
export function sdkClient(server: TestServer, creds?: { accessKeyId: string; secretAccessKey: string }): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: creds ?? { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    maxAttempts: 1,
  });
}

// CRC32C (Castagnoli), reflected polynomial 0x82F63B78: no built-in in Bun or Node.
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A 32-bit checksum as S3 shows it: 4 big-endian bytes in base64. */
export function crcBase64(value: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b.toString("base64");
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command with a hard timeout (SIGKILL), collecting its output. */
export async function run(
  cmd: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const p = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: opts.env as Record<string, string>,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.kill("SIGKILL");
  }, opts.timeoutMs ?? 60_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** Fails with the command's output when it did not exit 0. */
export function expectOk(r: RunResult, what: string): RunResult {
  if (r.code !== 0 || r.timedOut) {
    throw new Error(
      `${what} failed (code ${r.code}${r.timedOut ? ", timed out" : ""})\nstdout: ${r.stdout.slice(-4000)}\nstderr: ${r.stderr.slice(-4000)}`,
    );
  }
  return r;
}

/**
 * Debian's awscli against a test server: path-style, the server's key and region, no other
 * configuration read from the machine. `home` is a scratch directory (config files go there);
 * each command is killed after `timeoutMs`.
 */
export function awsCli(server: TestServer, home: string, timeoutMs = 60_000): (...args: string[]) => Promise<RunResult> {
  const configFile = join(home, "aws-config");
  writeFileSync(configFile, ["[default]", `region = ${server.region}`, "s3 =", "  addressing_style = path", ""].join("\n"));
  const env = {
    PATH: "/usr/bin:/bin",
    HOME: home,
    LANG: "C.UTF-8",
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_DEFAULT_REGION: server.region,
    AWS_CONFIG_FILE: configFile,
    AWS_SHARED_CREDENTIALS_FILE: join(home, "aws-credentials-none"),
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
  };
  return (...args) => run(["/usr/bin/aws", "--endpoint-url", server.endpoint, ...args], { env, timeoutMs });
}

export interface S3Failure {
  name: string;
  status: number;
  message: string;
}

/** The S3 error a request fails with (an error of any other kind, or success, fails the test). */
export async function s3Failure(p: Promise<unknown>): Promise<S3Failure> {
  try {
    await p;
  } catch (err) {
    if (err instanceof S3ServiceException) return { name: err.name, status: err.$metadata.httpStatusCode ?? 0, message: err.message };
    throw err;
  }
  throw new Error("expected the request to fail with an S3 error");
}

/**
 * Writes an s3cmd configuration for `server` in `dir` (path style, plain HTTP, the server's key
 * and region) with `extra` lines (e.g. "signature_v2 = True"), and returns its path.
 */
export function writeS3cmdConfig(server: TestServer, dir: string, extra: readonly string[] = []): string {
  const host = new URL(server.endpoint).host;
  const path = join(dir, "s3cfg");
  const lines = ["[default]", `access_key = ${server.accessKeyId}`, `secret_key = ${server.secretAccessKey}`, `host_base = ${host}`, `host_bucket = ${host}`, `bucket_location = ${server.region}`, "use_https = False", "progress_meter = False"];
  writeFileSync(path, [...lines, ...extra, ""].join("\n"));
  return path;
}
