// The fault suite's cluster: real Bunker server processes, one per network namespace, each on a
// tmpfs data dir (so that one can be filled), their config files, and the process-level faults
// (kill -9, SIGSTOP/SIGCONT, restart under faketime). Nodes 1..N are storage nodes in zones;
// node N+1 is the joiner, running from the start but in the layout only during a layout fault.
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Subprocess } from "bun";
import { addrOf, nsName, sh } from "./net";
import { waitFor } from "../helpers/cluster";
import type { SigningTarget } from "../helpers/signed";

const ROOT = join(import.meta.dir, "..", "..");
const S3_PORT = 3900;
const RPC_PORT = 3901;
const ADMIN_PORT = 3903;
/** A node answers /health within this after its process starts (bun start-up, db open). */
const START_TIMEOUT_MS = 30_000;
/** Bound of one admin request: the admin API answers from local state. */
const ADMIN_TIMEOUT_MS = 10_000;
/** A SIGTERMed node has this long to exit before it is SIGKILLed. */
const STOP_GRACE_MS = 5_000;
/**
 * Size of each node's tmpfs data dir: room for a long run's blocks (a 90 s run stores about
 * 150 MiB per node; block GC is slower than that). tmpfs takes memory only for what is written.
 */
const DATA_TMPFS_MB = 1024;
/** A full disk keeps at most this free (a page or so: nothing a block fits in). */
const FILL_SLACK = 64 * 1024;
const FILL_ATTEMPTS = 5;
const NODE_CAPACITY = 10 * 1024 ** 3;
export const BUCKET = "faults";

/** Where Debian (and most distributions) install libfaketime; null when it is not there. */
export function libfaketimePath(): string | null {
  const candidates = [`/usr/lib/${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu/faketime/libfaketime.so.1`, "/usr/lib/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1"];
  return candidates.find((p) => existsSync(p)) ?? null;
}

function libfaketime(): string {
  const p = libfaketimePath();
  if (!p) throw new Error("libfaketime.so.1 not found (apt-get install faketime)");
  return p;
}

export interface FaultNode {
  index: number;
  zone: string;
  addr: string;
  dir: string;
  dataDir: string;
  configPath: string;
  id: string;
  proc: Subprocess | null;
  /** Clock offset (seconds) the running process was started with through faketime, 0 for none. */
  skewS: number;
  paused: boolean;
  starts: number;
}

export class FaultCluster {
  readonly nodes: FaultNode[] = [];
  readonly adminToken = randomBytes(16).toString("hex");
  readonly rpcSecret = randomBytes(32).toString("hex");
  creds: { accessKeyId: string; secretAccessKey: string } = { accessKeyId: "", secretAccessKey: "" };
  layoutVersion = 0;

  /** `zones[i]` is the zone of storage node i+1; the joiner (last node) goes in `joinerZone`. */
  constructor(
    readonly workDir: string,
    readonly zones: string[],
    readonly joinerZone: string,
    readonly consistencyMode: string,
  ) {}

  get storage(): FaultNode[] {
    return this.nodes.slice(0, this.zones.length);
  }
  get joiner(): FaultNode {
    return this.nodes[this.zones.length]!;
  }

  target(n: FaultNode): SigningTarget {
    return { address: `${n.addr}:${S3_PORT}`, region: "garage", ...this.creds };
  }

  /** Writes configs, mounts the data dirs, starts every process, forms the cluster, creates the key and bucket. */
  async start(): Promise<void> {
    const all = [...this.zones, this.joinerZone];
    for (let k = 0; k < all.length; k++) {
      const index = k + 1;
      const dir = join(this.workDir, `n${index}`);
      const dataDir = join(dir, "data");
      mkdirSync(dataDir, { recursive: true });
      mkdirSync(join(dir, "meta"), { recursive: true });
      sh(["mount", "-t", "tmpfs", "-o", `size=${DATA_TMPFS_MB}m,mode=0700`, `bunker-faults-n${index}`, dataDir]);
      const addr = addrOf(index);
      const configPath = join(dir, "bunker.toml");
      writeFileSync(
        configPath,
        [
          `metadata_dir = "${join(dir, "meta")}"`,
          `data_dir = "${dataDir}"`,
          `replication_factor = 3`,
          `consistency_mode = "${this.consistencyMode}"`,
          `rpc_secret = "${this.rpcSecret}"`,
          `rpc_bind_addr = "${addr}:${RPC_PORT}"`,
          `rpc_public_addr = "${addr}:${RPC_PORT}"`,
          `block_size = 1048576`,
          `[s3_api]`,
          `api_bind_addr = "${addr}:${S3_PORT}"`,
          `s3_region = "garage"`,
          `[admin]`,
          `api_bind_addr = "${addr}:${ADMIN_PORT}"`,
          `admin_token = "${this.adminToken}"`,
          ``,
        ].join("\n"),
      );
      this.nodes.push({ index, zone: all[k]!, addr, dir, dataDir, configPath, id: "", proc: null, skewS: 0, paused: false, starts: 0 });
    }
    await Promise.all(this.nodes.map((n) => this.spawn(n, 0)));
    for (const n of this.nodes) n.id = (await this.admin<{ nodeId: string }>(n, "GET", "/v2/GetNodeInfo?node=self")).nodeId;
    const first = this.nodes[0]!;
    for (const n of this.nodes.slice(1)) {
      const r = await this.admin<{ success: boolean; error: string | null }[]>(n, "POST", "/v2/ConnectClusterNodes", [`${first.id}@${first.addr}:${RPC_PORT}`]);
      if (!r[0]!.success) throw new Error(`node ${n.index} cannot connect to node 1: ${r[0]!.error}`);
    }
    await waitFor("full mesh", async () => (await this.upCounts()).every((c) => c === this.nodes.length), 60_000);
    await this.changeLayout(this.storage.map((n) => ({ id: n.id, zone: n.zone, capacity: NODE_CAPACITY, tags: [] })));
    const key = await this.admin<{ accessKeyId: string; secretAccessKey: string }>(first, "POST", "/v2/CreateKey", { name: "faults", allow: { createBucket: true } });
    this.creds = { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey };
    await this.admin(first, "POST", "/v2/CreateBucket", { globalAlias: BUCKET });
    const bucket = await this.admin<{ id: string }>(first, "GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
    await this.admin(first, "POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: key.accessKeyId, permissions: { read: true, write: true, owner: true } });
  }

  /** How many nodes each node sees up (itself included). */
  async upCounts(): Promise<number[]> {
    return Promise.all(
      this.nodes.map(async (n) => (await this.admin<{ nodes: { isUp: boolean }[] }>(n, "GET", "/v2/GetClusterStatus")).nodes.filter((x) => x.isUp).length),
    );
  }

  /** Stages role changes on node 1, applies them as the next version, waits until every node has it. */
  async changeLayout(roles: unknown[]): Promise<void> {
    const first = this.nodes[0]!;
    await this.admin(first, "POST", "/v2/UpdateClusterLayout", { roles });
    const current = (await this.admin<{ version: number }>(first, "GET", "/v2/GetClusterLayout")).version;
    await this.admin(first, "POST", "/v2/ApplyClusterLayout", { version: current + 1 });
    this.layoutVersion = current + 1;
    await waitFor(
      `layout ${current + 1} on every node`,
      async () => {
        for (const n of this.nodes) if ((await this.admin<{ version: number }>(n, "GET", "/v2/GetClusterLayout")).version < current + 1) return false;
        return true;
      },
      30_000,
    );
  }

  async admin<T = unknown>(n: FaultNode, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const r = await fetch(`http://${n.addr}:${ADMIN_PORT}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.adminToken}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`node ${n.index} admin ${path}: ${r.status} ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Starts node n's process in its namespace (under faketime when skewS ≠ 0) and waits for its admin API. */
  async spawn(n: FaultNode, skewS: number): Promise<void> {
    n.starts++;
    const log = openSync(join(n.dir, `server.${n.starts}.log`), "a");
    // A leftover process on the node's address would answer for the new one.
    const before = await fetch(`http://${n.addr}:${ADMIN_PORT}/health`, { signal: AbortSignal.timeout(500) }).then(
      () => true,
      () => false,
    );
    if (before) throw new Error(`node ${n.index}: something still answers on ${n.addr} before its start`);
    // libfaketime preloaded directly, not through the \`faketime\` wrapper: the wrapper forks and
    // waits, so a signal to it would not reach the server. It shifts the wall clock only:
    // timers and timeouts (monotonic) keep real time.
    const clock = skewS === 0 ? {} : { LD_PRELOAD: libfaketime(), FAKETIME: `${skewS > 0 ? "+" : ""}${skewS}s`, FAKETIME_DONT_FAKE_MONOTONIC: "1" };
    const proc = Bun.spawn(["ip", "netns", "exec", nsName(n.index), process.execPath, join(ROOT, "src/main.ts"), "-c", n.configPath, "server"], {
      cwd: n.dir,
      stdout: log,
      stderr: log,
      env: { ...process.env, BUNKER_LOG: "warn", ...clock },
    });
    closeSync(log);
    n.proc = proc;
    n.skewS = skewS;
    n.paused = false;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        await fetch(`http://${n.addr}:${ADMIN_PORT}/health`, { signal: AbortSignal.timeout(1_000) });
        if (proc.exitCode === null) return;
      } catch {
        // not up yet
      }
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`node ${n.index} did not start (see ${n.dir}/server.${n.starts}.log)`);
      await Bun.sleep(100);
    }
  }

  /** Seconds between node n's clock (its HTTP Date header) and ours; null without a Date header. */
  async clockOffsetS(n: FaultNode): Promise<number | null> {
    const r = await fetch(`http://${n.addr}:${ADMIN_PORT}/health`, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
    await r.arrayBuffer();
    const date = r.headers.get("date");
    return date ? Math.round((Date.parse(date) - Date.now()) / 1000) : null;
  }

  async kill(n: FaultNode): Promise<void> {
    const p = n.proc;
    if (!p) return;
    if (n.paused) p.kill("SIGCONT");
    p.kill("SIGKILL");
    await p.exited;
    n.proc = null;
    n.paused = false;
  }

  /** SIGTERM, SIGKILL after STOP_GRACE_MS. */
  async stop(n: FaultNode): Promise<void> {
    const p = n.proc;
    if (!p) return;
    if (n.paused) p.kill("SIGCONT");
    p.kill("SIGTERM");
    const exited = await Promise.race([p.exited.then(() => true), Bun.sleep(STOP_GRACE_MS).then(() => false)]);
    if (!exited) await this.kill(n);
    n.proc = null;
    n.paused = false;
  }

  pause(n: FaultNode): void {
    n.proc?.kill("SIGSTOP");
    n.paused = true;
  }

  resume(n: FaultNode): void {
    n.proc?.kill("SIGCONT");
    n.paused = false;
  }

  /**
   * Fills node n's data dir to its last FILL_SLACK bytes. The node writes meanwhile, so what is
   * free changes under us: fill, look again, fill the rest, a bounded number of times.
   * Returns the bytes left free.
   */
  fillDisk(n: FaultNode): number {
    const free = () => {
      const st = statfsSync(n.dataDir);
      return st.bavail * st.bsize;
    };
    for (let i = 0; i < FILL_ATTEMPTS && free() > FILL_SLACK; i++) sh(["fallocate", "-l", String(free()), join(n.dataDir, `faults-fill-${i}`)], false);
    return free();
  }

  freeDisk(n: FaultNode): void {
    for (let i = 0; i < FILL_ATTEMPTS; i++) rmSync(join(n.dataDir, `faults-fill-${i}`), { force: true });
  }

  /** Every process killed, every data dir unmounted; the work dir is kept when `keepLogs`. */
  async destroy(keepLogs: boolean): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n)));
    for (const n of this.nodes) {
      sh(["umount", n.dataDir], false);
      rmSync(join(n.dir, "meta"), { recursive: true, force: true });
    }
    if (!keepLogs) rmSync(this.workDir, { recursive: true, force: true });
  }
}
