// Starts a real Bunker server process on free loopback ports with a temporary data dir,
// and creates an access key allowed to create buckets through the real admin API.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:net";
import type { Subprocess } from "bun";

const ROOT = join(import.meta.dir, "..", "..");
const START_TIMEOUT_MS = 20_000;
/** `[s3_web] root_domain` of test servers. */
export const WEB_ROOT_DOMAIN = "web.bunker.test";

/**
 * Ports are drawn below Linux's ephemeral range (32768-60999 by default), so that no outgoing
 * connection takes one between the draw and the server's bind (a node with peers binds its S3
 * port only once it has reconnected, up to STARTUP_PEER_WAIT_MS later), and never twice per
 * test process.
 */
const PORT_RANGE = { from: 20_000, to: 32_000 } as const;
const handedOut = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  // Bounded: the range holds 12 000 ports and a test process uses a few hundred.
  for (let attempt = 0; attempt < 1_000; attempt++) {
    const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${PORT_RANGE.from}-${PORT_RANGE.to}`);
}

export interface TestServer {
  dir: string;
  configPath: string;
  endpoint: string;
  s3Port: number;
  adminPort: number;
  rpcPort: number;
  /** The web endpoint: `<bucket>.${WEB_ROOT_DOMAIN}` serves a bucket with website access. */
  webPort: number;
  adminToken: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  proc: Subprocess;
  /** Output of the server so far (stdout + stderr). */
  logs(): string;
  /** SIGKILL, no cleanup: for crash tests. */
  kill(): Promise<void>;
  /**
   * Starts the process again on the same config and data; resolves once it serves S3 (a node
   * with peers opens S3 once it has reconnected to them, its admin port at once), or with
   * `untilServing: false` as soon as its admin port answers.
   */
  restart(opts?: { untilServing?: boolean }): Promise<void>;
  /** Stops the server and deletes its data. */
  stop(): Promise<void>;
  /** Runs the CLI against this server; returns exit code and output. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  admin<T = unknown>(method: "GET" | "POST", path: string, body?: unknown): Promise<T>;
}

export interface ServerOptions {
  /** Extra top-level TOML lines. */
  extraToml?: string;
  replicationFactor?: number;
  /** Shared network key of a multi-node test cluster (64 hex). */
  rpcSecret?: string;
  blockSize?: number;
  compression?: number | "none";
  /** Extra environment variables of the server process (fault injection). */
  env?: Record<string, string>;
  /** `[s3_api] s3_region` ("garage" by default). */
  region?: string;
}

export async function startServer(opts: ServerOptions = {}): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), "bunker-test-"));
  const s3Port = await freePort();
  const adminPort = await freePort();
  const rpcPort = await freePort();
  const webPort = await freePort();
  const adminToken = "test-admin-token-" + Math.random().toString(36).slice(2);
  const region = opts.region ?? "garage";
  const configPath = join(dir, "bunker.toml");
  writeFileSync(
    configPath,
    [
      `metadata_dir = "${join(dir, "meta")}"`,
      `data_dir = "${join(dir, "data")}"`,
      `replication_factor = ${opts.replicationFactor ?? 1}`,
      opts.rpcSecret ? `rpc_secret = "${opts.rpcSecret}"` : "",
      `rpc_bind_addr = "127.0.0.1:${rpcPort}"`,
      `block_size = ${opts.blockSize ?? 1024 * 1024}`,
      `compression_level = ${typeof opts.compression === "string" ? `"${opts.compression}"` : (opts.compression ?? 1)}`,
      opts.extraToml ?? "",
      `[s3_api]`,
      `api_bind_addr = "127.0.0.1:${s3Port}"`,
      `s3_region = "${region}"`,
      `[s3_web]`,
      `bind_addr = "127.0.0.1:${webPort}"`,
      `root_domain = "${WEB_ROOT_DOMAIN}"`,
      `[admin]`,
      `api_bind_addr = "127.0.0.1:${adminPort}"`,
      `admin_token = "${adminToken}"`,
    ].join("\n"),
  );
  let output = "";
  let proc!: Subprocess;
  const spawn = async (untilServing = true) => {
    // BUNKER_BUN_ARGS: extra runtime flags for the server process, e.g. "--cpu-prof-md" when profiling.
    const bunArgs = process.env.BUNKER_BUN_ARGS?.split(" ").filter(Boolean) ?? [];
    proc = Bun.spawn([process.execPath, ...bunArgs, join(ROOT, "src/main.ts"), "-c", configPath, "server"], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, BUNKER_LOG: process.env.BUNKER_LOG ?? "warn", ...opts.env },
    });
    for (const stream of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
      void (async () => {
        for await (const chunk of stream) output += new TextDecoder().decode(chunk);
      })();
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    // Any answer means the port is open; a node waiting for its layout or its peers answers 503.
    for (const port of untilServing ? [adminPort, s3Port] : [adminPort]) {
      for (;;) {
        try {
          await fetch(`http://127.0.0.1:${port}/${port === adminPort ? "health" : ""}`);
          break;
        } catch {
          // not up yet
        }
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${output}`);
        await Bun.sleep(50);
      }
    }
  };
  await spawn();

  const admin = async <T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`admin ${path}: ${r.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  const key = await admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", {
    name: "test",
    allow: { createBucket: true },
  });

  const server: TestServer = {
    dir,
    configPath,
    endpoint: `http://localhost:${s3Port}`,
    s3Port,
    adminPort,
    rpcPort,
    webPort,
    adminToken,
    accessKeyId: key.accessKeyId,
    secretAccessKey: key.secretAccessKey,
    region,
    get proc() {
      return proc;
    },
    logs: () => output,
    async kill() {
      proc.kill("SIGKILL");
      await proc.exited;
    },
    async restart(opts = {}) {
      await spawn(opts.untilServing ?? true);
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await proc.exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
    async cli(...args: string[]) {
      const p = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "-c", configPath, ...args], {
        stdout: "pipe",
        stderr: "pipe",
      });
      const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { code, stdout, stderr };
    },
    admin,
  };
  return server;
}
