// Builds a node from its config, layer by layer (db -> cluster -> tables -> blocks -> model
// -> APIs), and runs it until SIGINT/SIGTERM.
import { chmodSync, statfsSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { hostname } from "node:os";
import type http from "node:http";
import { ConfigError, credentialsPath, loadConfig, parseHostPort, readCredentials, type Config } from "./config";
import { openDatabase } from "./db/sqlite";
import { Checkpointer } from "./db/checkpointer";
import { loadOrCreateNodeKey } from "./cluster/node-key";
import { ClusterSystem } from "./cluster/system";
import { markSynced } from "./cluster/layout-history";
import { Readiness, STARTUP_PEER_WAIT_MS } from "./cluster/readiness";
import { RpcNode } from "./rpc/rpc";
import { RpcReplicas, serveTables } from "./table/rpc-replicas";
import { RpcCasPeers, serveCas } from "./table/cas-register";
import { proposedVersionValidator } from "./model/entry-schemas";
import { FullTableSync } from "./table/full-sync";
import { ShardedTableSync } from "./table/sync";
import { TableGc } from "./table/gc";
import { RpcOffloadRemote, TableOffload } from "./table/offload";
import { RpcBlocks, serveBlocks } from "./block/rpc-blocks";
import { HybridClock } from "./util/hlc";
import { existsSync, readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { Model } from "./model/model";
import { abortInterruptedUploads, startPendingRepair } from "./model/repair";
import { LocalBlockStore } from "./block/store";
import { defaultZstd } from "./block/codec";
import { HashPool } from "./block/hash";
import { BlockScrub } from "./block/scrub";
import { LifecycleWorker } from "./model/lifecycle";
import { BlockManager } from "./block/manager";
import { s3App } from "./api/s3/router";
import { adminApp } from "./api/admin/router";
import { webApp } from "./web/router";
import { serveNode } from "./api/http";
import { logger } from "./util/log";
import { MemoryBudget } from "./util/memory-budget";
import { metrics } from "./util/metrics";
import { randomHex, type BlockHash } from "./util/ids";
import { describeChange, makePrivateDir, PRIVATE_FILE_MODE, tightenModes } from "./util/private-files";
import { VERSION_LINE } from "./util/version";
import { WorkerLoop } from "./util/worker-loop";

const log = logger("server");

export interface RunningNode {
  config: Config;
  nodeId: string;
  model: Model;
  blocks: BlockManager;
  s3Port: number;
  adminPort: number;
  /** Undefined when the config serves no website endpoint. */
  webPort?: number;
  stop(): Promise<void>;
}

function listenAddr(addr: string, key: string) {
  const { host, port } = parseHostPort(addr, key);
  return { host: host === "::" || host === "0.0.0.0" ? "::" : host, port };
}

/** First start on embedded defaults: an admin token and a key allowed to create buckets. */
async function ensureFirstStartCredentials(config: Config, model: Model): Promise<string | undefined> {
  if (!config.embedded_defaults || config.admin.admin_token) return config.admin.admin_token;
  const existing = readCredentials(config);
  if (existing) return existing.adminToken;
  const key = await model.createKey("default", true);
  const creds = { adminToken: randomHex(32), accessKeyId: key.id, secretAccessKey: key.secret };
  const path = credentialsPath(config);
  makePrivateDir(dirname(path));
  writeFileSync(path, JSON.stringify(creds, null, 2) + "\n", { mode: PRIVATE_FILE_MODE });
  chmodSync(path, PRIVATE_FILE_MODE);
  const endpoint = `http://localhost:${parseHostPort(config.s3_api.api_bind_addr, "s3_api.api_bind_addr").port}`;
  process.stdout.write(
    [
      "",
      "Bunker is set up. These credentials are shown once (saved in " + path + ", mode 0600):",
      `  endpoint:          ${endpoint}   (region ${config.s3_api.s3_region})`,
      `  access key id:     ${key.id}`,
      `  secret access key: ${key.secret}`,
      "Try it:",
      `  AWS_ACCESS_KEY_ID=${key.id} AWS_SECRET_ACCESS_KEY=${key.secret} AWS_DEFAULT_REGION=${config.s3_api.s3_region} aws --endpoint-url ${endpoint} s3 mb s3://my-first-bucket`,
      ...(config.s3_web?.root_domain
        ? [
            "Publish a bucket as a website (then open it in a browser):",
            `  ... aws --endpoint-url ${endpoint} s3 website s3://my-first-bucket --index-document index.html`,
            `  http://my-first-bucket.${config.s3_web.root_domain}:${parseHostPort(config.s3_web.bind_addr, "s3_web.bind_addr").port}/`,
          ]
        : []),
      "",
    ].join("\n"),
  );
  return creds.adminToken;
}

/** rpc_secret from the config, or one generated at first start and kept in metadata_dir. */
function networkKey(config: Config): Uint8Array {
  if (config.rpc_secret) return Buffer.from(config.rpc_secret, "hex");
  const path = `${config.metadata_dir}/rpc_secret`;
  if (!existsSync(path)) {
    writeFileSync(path, randomHex(32) + "\n", { mode: PRIVATE_FILE_MODE });
    log.info(`no rpc_secret configured: generated one in ${path} (other nodes must use the same)`);
  }
  return Buffer.from(readFileSync(path, "utf8").trim(), "hex");
}

/**
 * metadata_dir (every S3 secret key, the node key) and data_dir (users' objects) are the
 * owner's only: created 0700, or, when an older release or a hand left them open, closed with
 * one log line naming each change. The first-start credentials file is checked with them.
 */
function securePrivateDirs(config: Config): void {
  const changes = [
    ...tightenModes(config.metadata_dir, { entries: true }),
    ...tightenModes(config.data_dir, { entries: false }),
    ...tightenModes(credentialsPath(config), { entries: false }),
  ];
  makePrivateDir(config.metadata_dir);
  makePrivateDir(config.data_dir);
  if (changes.length > 0) log.warn(`removed group/other access (it holds secrets or object data): ${changes.map(describeChange).join(", ")}`);
}

/** The address peers should dial: rpc_public_addr, else the bind address with a real IP. */
function publicRpcAddr(config: Config, port: number): string {
  if (config.rpc_public_addr) return config.rpc_public_addr;
  const { host } = parseHostPort(config.rpc_bind_addr, "rpc_bind_addr");
  if (host !== "::" && host !== "0.0.0.0") return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const ip = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
  return `${ip ?? "127.0.0.1"}:${port}`;
}

export async function startNode(config: Config): Promise<RunningNode> {
  const bootTime = Date.now();
  securePrivateDirs(config);
  const nodeKey = loadOrCreateNodeKey(config.metadata_dir);
  const dbPath = `${config.metadata_dir}/db.sqlite`;
  const db = openDatabase(dbPath, { fsync: config.metadata_fsync });
  const checkpointer = new Checkpointer(db, dbPath, config.metadata_fsync);
  await checkpointer.start();
  const disk = (path: string) => {
    const st = statfsSync(path);
    return { available: st.bavail * st.bsize, total: st.blocks * st.bsize };
  };
  // Fault injection for tests: a node whose wall clock is off by this many milliseconds.
  const skewMs = Number(process.env.BUNKER_FAULT_CLOCK_SKEW_MS ?? 0);
  const clock = new HybridClock(skewMs ? () => Date.now() + skewMs : Date.now);

  const rpcAddr = listenAddr(config.rpc_bind_addr, "rpc_bind_addr");
  const rpc = new RpcNode({ nodeKey, networkKey: networkKey(config), bindHost: rpcAddr.host === "::" ? "0.0.0.0" : rpcAddr.host, bindPort: rpcAddr.port });
  await rpc.listen();
  const cluster = new ClusterSystem({
    rpc,
    db,
    rpcPublicAddr: publicRpcAddr(config, rpc.port),
    bootstrapPeers: config.bootstrap_peers,
    replicationFactor: config.replication_factor,
    consistencyMode: config.consistency_mode,
    hostname: hostname(),
    diskStats: () => ({ data: disk(config.data_dir), metadata: disk(config.metadata_dir) }),
    now: () => clock.now(),
  });
  cluster.bootstrapSingleNode({ zone: "dc1", capacity: disk(config.data_dir).total, tags: [] });

  const replicas = new RpcReplicas(rpc, clock);
  const model = new Model(db, cluster.placement, replicas, clock, { casPeers: new RpcCasPeers(rpc, clock) });
  let onBlockRefsReceived: (refs: { hash: BlockHash; deleted: boolean }[]) => void = () => {};
  const shardedSync = new ShardedTableSync(rpc, model.localStores(), cluster.placement, (table, entries) => {
    // Checked against the block_ref entry schema (hash: a BlockHash) before they were merged.
    if (table === "block_ref") onBlockRefsReceived(entries as { hash: BlockHash; deleted: boolean }[]);
  });
  serveTables(rpc, clock, model.localStores());
  serveCas(rpc, clock, model.casAcceptor, proposedVersionValidator);
  const tableGc = new TableGc(model.localStores(), cluster.placement, db, model.committer, replicas, { now: () => clock.read() });
  const tableOffload = new TableOffload(model.localStores(), cluster.placement, model.committer, new RpcOffloadRemote(rpc));
  // A sync pass follows layout changes and returning peers: partitions may have left this node.
  shardedSync.onPass(() => tableOffload.trigger());
  const fullSync = new FullTableSync(rpc, db, model.localStores(), () =>
    [...new Set([...cluster.placement.allNodes(), ...rpc.peers()])].filter((n) => n !== nodeKey.id),
  );
  const store = new LocalBlockStore({ dataDir: config.data_dir, fsync: config.data_fsync });
  await store.init();
  const hasher = new HashPool();
  // Every block buffer of this node is leased from it (docs/memory.md).
  const budget = new MemoryBudget("block buffers", config.block_ram_buffer_max);
  exposeBudget(budget);
  const blocks = new BlockManager(
    store,
    cluster.placement,
    defaultZstd(),
    db,
    { blockSize: config.block_size, compressionLevel: config.compression_level, budget },
    new RpcBlocks(rpc),
  );
  serveBlocks(rpc, store, (hash, data, compressed) => blocks.storeLocal(hash, data, compressed), budget, blocks.buffers);
  const scrub = new BlockScrub({
    store,
    codec: defaultZstd(),
    hash: async (data) => (await hasher.hash(data)).hash,
    resync: (hashes) => blocks.resync.enqueue(hashes),
    db,
    blockSize: config.block_size,
  });
  onBlockRefsReceived = (refs) => blocks.resync.enqueue(refs.filter((r) => !r.deleted).map((r) => r.hash));
  cluster.start();

  const adminToken = await ensureFirstStartCredentials(config, model);
  if (!adminToken)
    log.warn(`admin API disabled: no admin token configured (admin.admin_token, admin.admin_token_file or BUNKER_ADMIN_TOKEN); ${config.admin.api_bind_addr} serves only /health, /metrics and /check`);
  model.start();
  blocks.start();
  const pendingRepair = startPendingRepair({ model, blocks });
  fullSync.start();
  shardedSync.start();
  tableGc.start();
  tableOffload.start();
  scrub.start();
  const lifecycle = new LifecycleWorker(model);
  lifecycle.start();
  const syncTracker = trackSync(cluster, shardedSync, blocks);

  const s3Addr = listenAddr(config.s3_api.api_bind_addr, "s3_api.api_bind_addr");
  const adminAddr = listenAddr(config.admin.api_bind_addr, "admin.api_bind_addr");
  const s3Services = {
    model,
    blocks,
    hasher,
    settings: { region: config.s3_api.s3_region, rootDomain: config.s3_api.root_domain, blockSize: config.block_size },
  };
  // The admin port opens at once (its /health says why S3 is not served yet); S3 and web wait
  // until this node reaches a quorum of its peers, or STARTUP_PEER_WAIT_MS.
  const readiness = new Readiness(cluster);
  const servers: http.Server[] = [];
  servers.push(
    await serveNode(
      adminApp({
        model,
        adminToken,
        metricsToken: config.admin.metrics_token,
        domains: { s3RootDomain: config.s3_api.root_domain, webRootDomain: config.s3_web?.root_domain, webEnabled: config.s3_web !== undefined },
        blockErrors: () => blocks.resync.errors(),
        workers: () =>
          [fullSync.stats, shardedSync.stats, tableGc.stats, tableOffload.stats, model.queueStats, model.countsStats, lifecycle.stats, ...blocks.workers(), scrub.stats, checkpointer.stats].map((w) => w.info()),
        repair: (kind) => {
          if (kind === "blocks") return { queued: blocks.queueAllForResync() };
          if (kind === "lifecycle") {
            void lifecycle.run().catch(() => {}); // errors are in `worker list`
            return {};
          }
          if (kind === "scrub") {
            void scrub.run();
            return {};
          }
          void fullSync.syncAll();
          void shardedSync.syncAll();
          tableOffload.trigger();
          return {};
        },
        cluster,
        readiness,
        replicationFactor: config.replication_factor,
        now: () => clock.now(),
      }),
      adminAddr,
    ),
  );
  const waitStart = Date.now();
  if (!readiness.peersReachable()) {
    if (await readiness.waitForPeers()) log.info(`reconnected to a quorum of peers in ${Date.now() - waitStart} ms`);
    else {
      const up = cluster.peers().filter((p) => p.isUp).length;
      log.warn(
        `no write quorum of peers reachable after ${STARTUP_PEER_WAIT_MS} ms (${up} of ${cluster.peers().length} connected): ` +
          `serving S3 anyway; requests that need the unreachable nodes answer 503`,
      );
    }
  }
  // Writes to a quorum: after the wait, so that it can reach one.
  await abortInterruptedUploads(model, bootTime).catch((e) => log.warn(`interrupted uploads: ${(e as Error).message}`));
  const s3Server = await serveNode(s3App(s3Services), s3Addr);
  servers.push(s3Server);
  let webServer: http.Server | undefined;
  if (config.s3_web) {
    webServer = await serveNode(webApp(s3Services, { rootDomain: config.s3_web.root_domain }), listenAddr(config.s3_web.bind_addr, "s3_web.bind_addr"));
    servers.push(webServer);
  }
  const port = (s: http.Server) => (s.address() as { port: number }).port;
  const web = config.s3_web ? `, web on ${config.s3_web.bind_addr} (${config.s3_web.root_domain ? `<bucket>.${config.s3_web.root_domain}` : "host = bucket"})` : "";
  readiness.markServing();
  log.info(`${VERSION_LINE}, node ${nodeKey.id.slice(0, 16)} up: S3 on ${config.s3_api.api_bind_addr}, admin on ${config.admin.api_bind_addr}${web}, RPC on ${config.rpc_bind_addr}`);

  return {
    config,
    nodeId: nodeKey.id,
    model,
    blocks,
    s3Port: port(s3Server),
    adminPort: port(servers[0]!),
    webPort: webServer ? port(webServer) : undefined,
    async stop() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      for (const s of servers) s.closeAllConnections?.();
      cluster.stop();
      // Its timer stops now; a check under way ends with the sync pass it waits for.
      const trackerStopped = syncTracker.stop();
      await fullSync.stop();
      await shardedSync.stop();
      await trackerStopped;
      await tableGc.stop();
      await tableOffload.stop();
      await scrub.stop();
      await lifecycle.stop();
      await pendingRepair.stop();
      await model.stop();
      await blocks.stop();
      await rpc.close();
      hasher.close();
      await checkpointer.stop();
      db.close();
    },
  };
}

/** How often this node checks whether it has finished syncing the current layout version. */
const SYNC_TRACK_INTERVAL_MS = 2_000;

/**
 * Advances this node's sync tracker: once a full anti-entropy pass that started under layout
 * version N compared every partition with every replica without error, and the block resync
 * queue is empty, this node holds everything version N gives it. When every storage node of
 * N says so, reads move to N and older versions retire.
 */
function trackSync(cluster: ClusterSystem, sync: ShardedTableSync, blocks: BlockManager): WorkerLoop<void> {
  let passedVersion = 0;
  let seen = { version: 0, at: 0 };
  // Single flight: no check runs while one waits for its anti-entropy pass.
  const tracker = new WorkerLoop({ name: "layout sync tracker", intervalMs: SYNC_TRACK_INTERVAL_MS }, async () => {
    const h = cluster.history();
    if (h.current === 0 || (h.syncMap[cluster.selfId] ?? 0) >= h.current) return;
    if (seen.version !== h.current) seen = { version: h.current, at: Date.now() };
    if (passedVersion < h.current) {
      const { version, at } = seen;
      const report = await sync.syncAll();
      // Only a pass that started once this version was known covers its placement.
      if (report.startedAt >= at && report.errors === 0 && report.unreachable === 0 && !report.interrupted) passedVersion = version;
      return;
    }
    if (blocks.resync.queueLength() === 0) {
      cluster.updateHistory((x) => markSynced(x, cluster.selfId, passedVersion));
      log.info(`synced layout version ${passedVersion}`);
    }
  });
  tracker.start();
  return tracker;
}

/** `bunker server`: runs until SIGINT/SIGTERM. */
export async function runServer(configPath: string | undefined): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(configPath);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  let node: RunningNode;
  try {
    node = await startNode(config);
  } catch (e) {
    process.stderr.write(`error: cannot start: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const shutdown = async (signal: string) => {
    log.info(`${signal}: stopping`);
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    await node.stop().catch(() => {});
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

/** The block buffer budget on /metrics: its size, what is leased, the most ever leased, and the leases waiting. */
function exposeBudget(budget: MemoryBudget): void {
  metrics.gauge("block_buffer_budget_bytes", "block_ram_buffer_max: bytes of block buffers this node may hold", () => budget.maxBytes);
  metrics.gauge("block_buffer_used_bytes", "Bytes of block buffers leased now", () => budget.used);
  metrics.gauge("block_buffer_peak_bytes", "Most bytes of block buffers ever leased at once", () => budget.peak);
  metrics.gauge("block_buffer_waiting", "Leases of block buffers waiting for memory", () => budget.waiting);
}
