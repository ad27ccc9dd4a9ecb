// The servers under test behind one interface: Bunker (real process), s3rver (Node child
// process; --openssl-legacy-provider because its continuation tokens use DES, which Node 17+
// refuses otherwise), the bare ceiling servers (Bun.serve / node:http child processes, no S3 logic)
// and the S3 floor (node:http + SigV4 + one sqlite row: floor-server.ts).
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startServer, freePort, type TestServer } from "../../tests/helpers/server.ts";
import { S3Client, drain } from "./client.ts";
import { ownPids, spawnReady, stopProcess } from "./proc.ts";

const BENCH_DIR = import.meta.dir + "/..";
/** Timeout of one large transfer (1 GiB at a pessimistic 10 MiB/s would not fit; such a run fails loudly). */
export const BIG_TIMEOUT_MS = 180_000;
/** Timeout of one small request. */
export const SMALL_TIMEOUT_MS = 30_000;

export interface ListPage {
  keys: number;
  next?: string;
}

export interface Target {
  name: string;
  /** Whether it speaks S3 (signed requests, buckets, listing). Ceilings do not. */
  s3: boolean;
  pid(): number | undefined;
  put(bucket: string, key: string, body: Bun.BodyInit, timeoutMs?: number): Promise<void>;
  /** Returns the number of body bytes received. */
  get(bucket: string, key: string, timeoutMs?: number): Promise<number>;
  head(bucket: string, key: string): Promise<void>;
  del(bucket: string, key: string): Promise<void>;
  createBucket(bucket: string): Promise<void>;
  listPage(bucket: string, maxKeys: number, token?: string): Promise<ListPage>;
  stop(): Promise<void>;
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

function parseListPage(xml: string): ListPage {
  const keys = xml.match(/<Key>/g)?.length ?? 0;
  const truncated = /<IsTruncated>true<\/IsTruncated>/.test(xml);
  const m = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml);
  if (truncated && !m) throw new Error("truncated list page without NextContinuationToken");
  return { keys, next: truncated ? unescapeXml(m![1]!) : undefined };
}

class S3Target implements Target {
  readonly s3 = true;
  constructor(
    readonly name: string,
    private readonly client: S3Client,
    readonly pid: () => number | undefined,
    private readonly onStop: () => Promise<void>,
  ) {}

  async put(bucket: string, key: string, body: Bun.BodyInit, timeoutMs = SMALL_TIMEOUT_MS): Promise<void> {
    await this.client.ok("PUT", bucket, key, { body, timeoutMs });
  }
  async get(bucket: string, key: string, timeoutMs = SMALL_TIMEOUT_MS): Promise<number> {
    const { res, bytes } = await this.client.ok("GET", bucket, key, { timeoutMs });
    const declared = res.headers.get("content-length");
    if (declared !== null && Number(declared) !== bytes) throw new Error(`GET ${key}: ${bytes} bytes, Content-Length ${declared}`);
    return bytes;
  }
  async head(bucket: string, key: string): Promise<void> {
    await this.client.ok("HEAD", bucket, key);
  }
  async del(bucket: string, key: string): Promise<void> {
    await this.client.ok("DELETE", bucket, key);
  }
  async createBucket(bucket: string): Promise<void> {
    const res = await this.client.request("PUT", bucket, undefined);
    const text = await res.text();
    if (res.status >= 300 && !text.includes("BucketAlreadyOwnedByYou")) throw new Error(`create bucket ${bucket}: ${res.status} ${text}`);
  }
  async listPage(bucket: string, maxKeys: number, token?: string): Promise<ListPage> {
    const query: Record<string, string> = { "list-type": "2", "max-keys": String(maxKeys) };
    if (token !== undefined) query["continuation-token"] = token;
    return parseListPage(await this.client.text("GET", bucket, undefined, { query, timeoutMs: 120_000 }));
  }
  stop(): Promise<void> {
    return this.onStop();
  }
}

/** A bare server: no auth, no buckets (the bucket becomes part of the file name). */
class CeilingTarget implements Target {
  readonly s3 = false;
  constructor(
    readonly name: string,
    private readonly url: string,
    readonly pid: () => number | undefined,
    private readonly onStop: () => Promise<void>,
  ) {}

  private async req(method: string, bucket: string, key: string, body?: Bun.BodyInit, timeoutMs = SMALL_TIMEOUT_MS): Promise<Response> {
    const res = await fetch(`${this.url}/${bucket}.${key.replace(/\//g, "_")}`, { method, body, signal: AbortSignal.timeout(timeoutMs), decompress: false });
    if (res.status >= 300) throw new Error(`${this.name} ${method} ${key}: HTTP ${res.status}`);
    return res;
  }
  async put(bucket: string, key: string, body: Bun.BodyInit, timeoutMs?: number): Promise<void> {
    await drain(await this.req("PUT", bucket, key, body, timeoutMs));
  }
  async get(bucket: string, key: string, timeoutMs?: number): Promise<number> {
    return drain(await this.req("GET", bucket, key, undefined, timeoutMs));
  }
  async head(bucket: string, key: string): Promise<void> {
    await drain(await this.req("HEAD", bucket, key));
  }
  async del(bucket: string, key: string): Promise<void> {
    await drain(await this.req("DELETE", bucket, key));
  }
  async createBucket(): Promise<void> {}
  async listPage(): Promise<ListPage> {
    throw new Error("a ceiling server does not list");
  }
  stop(): Promise<void> {
    return this.onStop();
  }
}

export async function startBunker(name: string, compression: number | "none"): Promise<Target & { server: TestServer }> {
  const server = await startServer({ compression });
  ownPids.add(server.proc.pid);
  const client = new S3Client({
    url: `http://127.0.0.1:${server.s3Port}`,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    region: server.region,
  });
  const t = new S3Target(name, client, () => server.proc.pid, () => server.stop());
  return Object.assign(t, { server });
}

export async function startS3rver(name: string, workDir: string, buckets: string[]): Promise<Target> {
  const port = await freePort();
  const dir = mkdtempSync(join(workDir, "s3rver-"));
  const { proc } = await spawnReady(["node", "--openssl-legacy-provider", join(BENCH_DIR, "s3rver-server.cjs"), String(port), dir, buckets.join(",")]);
  const client = new S3Client({ url: `http://127.0.0.1:${port}`, accessKeyId: "S3RVER", secretAccessKey: "S3RVER", region: "us-east-1" });
  return new S3Target(name, client, () => proc.pid, async () => {
    await stopProcess(proc);
    rmSync(dir, { recursive: true, force: true });
  });
}

export async function startCeiling(name: string, mode: "bun" | "node", workDir: string): Promise<Target> {
  const port = await freePort();
  const dir = mkdtempSync(join(workDir, `ceiling-${mode}-`));
  const { proc } = await spawnReady([process.execPath, join(BENCH_DIR, "ceiling-server.ts"), mode, String(port), dir]);
  return new CeilingTarget(name, `http://127.0.0.1:${port}`, () => proc.pid, async () => {
    await stopProcess(proc);
    rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * The S3 floor (benchmarks/floor-server.ts): signed requests as to Bunker, the least S3 work
 * behind them. Small objects only; it does not list.
 */
export async function startFloor(name: string, workDir: string): Promise<Target> {
  const port = await freePort();
  const dir = mkdtempSync(join(workDir, "floor-"));
  const credentials = { accessKeyId: "GKfloorbench", secretAccessKey: "floor-bench-secret", region: "garage" };
  const { proc } = await spawnReady([process.execPath, join(BENCH_DIR, "floor-server.ts"), String(port), dir, credentials.accessKeyId, credentials.secretAccessKey, credentials.region]);
  ownPids.add(proc.pid);
  const client = new S3Client({ url: `http://127.0.0.1:${port}`, ...credentials });
  return new S3Target(name, client, () => proc.pid, async () => {
    await stopProcess(proc);
    rmSync(dir, { recursive: true, force: true });
  });
}
