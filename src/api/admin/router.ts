// The admin API (Garage v2 names, JSON, bearer token): keys, buckets, permissions, status,
// health. The CLI is its main client.
import { Elysia, t } from "elysia";
import { bucketOfHost, ClientDisconnected, RequestBodyTimeout } from "../http";
import { parseDecimal } from "../../util/decimal";
import { metrics } from "../../util/metrics";
import { timingSafeEqual } from "node:crypto";
import { ModelError, type Model } from "../../model/model";
import type { KeyEntry } from "../../model/key";
import { NO_QUOTAS, type BucketEntry, type WebsiteConfig } from "../../model/bucket";
import { isValidBucketName } from "../../model/bucket";
import { ACCESS_KEY_ID_RE, SECRET_KEY_RE } from "../../util/ids";
import { QuorumError } from "../../table/quorum";
import { clusterAdminRoutes, LayoutRequestError, type ClusterAdminServices } from "./cluster";
import type { WorkerInfo } from "../../util/worker-stats";

export type RepairKind = "tables" | "blocks" | "scrub" | "lifecycle";

export interface AdminServices extends ClusterAdminServices {
  model: Model;
  blockErrors: () => { hash: string; errors: number; nextTry: number; lastError: string | null }[];
  /** The background workers of this node and what they have been doing. */
  workers: () => WorkerInfo[];
  /**
   * Starts a repair: "tables" = a full anti-entropy pass, "blocks" = check every block held,
   * "scrub" = read every stored block and check it against its hash, "lifecycle" = apply the
   * buckets' lifecycle rules now rather than at the day's pass.
   */
  repair: (kind: RepairKind) => { queued?: number };
  adminToken: string | undefined;
  /** When set, /metrics asks for it as a bearer token; else /metrics is public (as Garage). */
  metricsToken?: string;
  /** Root domains of the S3 and web endpoints (no leading dot); webEnabled: [s3_web] is served. */
  domains: { s3RootDomain?: string; webRootDomain?: string; webEnabled: boolean };
}

/** True when this node answers for `domain`: a bucket on the S3 endpoint's root domain, or a
 * bucket with website access on the web endpoint (by its root domain or its whole name). */
function servesDomain(model: Model, domains: AdminServices["domains"], domain: string): boolean {
  const s3Bucket = bucketOfHost(domain, domains.s3RootDomain, false);
  if (s3Bucket !== undefined && model.resolveBucket(s3Bucket)) return true;
  if (!domains.webEnabled) return false;
  const webBucket = bucketOfHost(domain, domains.webRootDomain, true);
  return webBucket !== undefined && (model.resolveBucket(webBucket)?.website.v ?? null) !== null;
}

export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Largest admin request body. The biggest real one, a layout change for dozens of nodes, is a
 * few KiB; the bound keeps any body (even one with a valid token) from costing real memory.
 */
const ADMIN_MAX_BODY_BYTES = 1024 * 1024;
/** Endpoints answered without the admin token; each checks what it needs itself. */
const PUBLIC_PATHS: ReadonlySet<string> = new Set(["/health", "/metrics", "/check"]);

/**
 * Refuses a request to a guarded endpoint without the admin token, or with a declared body
 * over ADMIN_MAX_BODY_BYTES. Runs before routing and before any byte of the body is read, so
 * that a caller without the token costs nothing and learns nothing (not even whether its body
 * would parse); the unread body is not drained (api/http closes the connection).
 */
function checkAdminRequest(request: Request, adminToken: string | undefined): void {
  if (!adminToken) throw new AdminError(403, "AccessDenied", "no admin_token is configured on this node: the admin API is disabled");
  const auth = request.headers.get("authorization") ?? "";
  if (!auth.startsWith("Bearer ")) throw new AdminError(401, "Unauthorized", "missing bearer token (Authorization: Bearer <admin_token>)");
  if (!tokenMatches(auth.slice(7).trim(), adminToken)) throw new AdminError(403, "AccessDenied", "invalid admin token");
  const declared = request.headers.get("content-length");
  if (declared !== null && (parseDecimal(declared, 0, Number.MAX_SAFE_INTEGER) ?? Infinity) > ADMIN_MAX_BODY_BYTES)
    throw bodyTooLarge();
}

function bodyTooLarge(): AdminError {
  return new AdminError(413, "PayloadTooLarge", `admin request bodies are limited to ${ADMIN_MAX_BODY_BYTES} bytes`);
}

/**
 * Deepest nesting of arrays and objects an admin body may have (the deepest real one has 3).
 * A 10 KB body of nested brackets cost 4 s and 1 GiB in schema validation, or overflowed the
 * stack: it is refused before it is parsed.
 */
const ADMIN_MAX_JSON_DEPTH = 32;

/** True when `text` opens more than `max` arrays/objects inside each other (strings skipped). */
export function exceedsJsonDepth(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * The JSON body of an admin request, read up to ADMIN_MAX_BODY_BYTES whatever its framing
 * (a chunked body is cut there) and whatever its Content-Type: the admin API speaks JSON only.
 * An empty body is null.
 */
async function readJsonBody(request: Request): Promise<unknown> {
  if (!request.body) return null;
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > ADMIN_MAX_BODY_BYTES) {
      void reader.cancel().catch(() => {});
      throw bodyTooLarge();
    }
    chunks.push(value);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return null;
  if (exceedsJsonDepth(text, ADMIN_MAX_JSON_DEPTH))
    throw new AdminError(400, "InvalidRequest", `request body nests deeper than ${ADMIN_MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text);
  } catch {
    throw new AdminError(400, "InvalidRequest", "request body is not valid JSON");
  }
}

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function keyInfo(model: Model, key: KeyEntry, showSecret: boolean) {
  return {
    accessKeyId: key.id,
    name: key.name.v,
    secretAccessKey: showSecret ? key.secret : null,
    created: new Date(key.created).toISOString(),
    expiration: null,
    expired: false,
    permissions: { createBucket: key.allowCreateBucket.v },
    buckets: model
      .listBuckets()
      .filter((b) => b.keys[key.id] && (b.keys[key.id]!.read || b.keys[key.id]!.write || b.keys[key.id]!.owner))
      .map((b) => ({
        id: b.id,
        globalAliases: model.aliasesOf(b.id),
        localAliases: [],
        permissions: { read: b.keys[key.id]!.read, write: b.keys[key.id]!.write, owner: b.keys[key.id]!.owner },
      })),
  };
}

async function bucketInfo(model: Model, b: BucketEntry) {
  // Without a read quorum the answer still goes out (a change just made must not look
  // failed), with this node's own counts.
  const counts = await model.bucketCounts(b.id).catch((err) => {
    if (err instanceof QuorumError) return model.localBucketCounts(b.id);
    throw err;
  });
  return {
    id: b.id,
    created: new Date(b.created).toISOString(),
    globalAliases: model.aliasesOf(b.id),
    websiteAccess: b.website.v !== null,
    websiteConfig: b.website.v ? { indexDocument: b.website.v.indexDocument, errorDocument: b.website.v.errorDocument } : null,
    quotas: b.quotas?.v ?? NO_QUOTAS,
    keys: Object.entries(b.keys)
      .filter(([, p]) => p.read || p.write || p.owner)
      .map(([id, p]) => ({
        accessKeyId: id,
        name: model.getKey(id)?.name.v ?? "",
        permissions: { read: p.read, write: p.write, owner: p.owner },
        bucketLocalAliases: [],
      })),
    objects: counts.objects,
    bytes: counts.bytes,
    unfinishedUploads: counts.uploads,
  };
}

/** Most block rows InspectObject lists per version (a 10 GiB object at 1 MiB blocks). */
const INSPECT_BLOCKS_MAX = 10_000;

/** Every version of an object as stored (merged from a read quorum), with its blocks: for debugging. */
async function inspectObject(model: Model, bucket: BucketEntry, key: string) {
  const entry = await model.objects.get(bucket.id, key);
  if (!entry) throw new AdminError(404, "NoSuchKey", `bucket ${bucket.id} has no entry for key ${key}`);
  const versions = [];
  for (const v of entry.versions) {
    const data = v.state.kind === "complete" ? v.state.data : undefined;
    const meta = data && data.kind !== "deleteMarker" ? data.meta : undefined;
    const blocks: { partNumber: number; offset: number; hash: string; size: number }[] = [];
    if (data?.kind === "blocks" || (v.state.kind === "uploading" && !v.state.multipart)) {
      for await (const page of model.blockPages(v.uuid)) {
        for (const b of page) if (blocks.length < INSPECT_BLOCKS_MAX) blocks.push({ partNumber: b.part, offset: b.offset, hash: b.hash, size: b.size });
        if (blocks.length >= INSPECT_BLOCKS_MAX) break;
      }
    }
    versions.push({
      uuid: v.uuid,
      timestamp: new Date(v.timestamp).toISOString(),
      encrypted: false,
      uploading: v.state.kind === "uploading",
      aborted: v.state.kind === "aborted",
      deleteMarker: data?.kind === "deleteMarker",
      inline: data?.kind === "inline",
      size: meta?.size ?? null,
      etag: meta?.etag ?? null,
      headers: meta?.headers ?? (v.state.kind === "uploading" ? v.state.headers : []),
      blocks,
    });
  }
  return { bucketId: bucket.id, key, versions };
}

function findKey(model: Model, q: { id?: string; search?: string }): KeyEntry {
  if (q.id) {
    const k = model.getKey(q.id);
    if (!k) throw new AdminError(404, "NoSuchAccessKey", `access key ${q.id} not found`);
    return k;
  }
  if (q.search) {
    const s = q.search;
    const matches = model.listKeys().filter((k) => k.id === s || k.name.v === s || k.id.startsWith(s));
    const exact = matches.filter((k) => k.id === s || k.name.v === s);
    const found = exact.length === 1 ? exact : matches;
    if (found.length === 0) throw new AdminError(404, "NoSuchAccessKey", `no access key matches "${s}"`);
    if (found.length > 1) throw new AdminError(400, "InvalidRequest", `"${s}" matches ${found.length} keys: give more of the id`);
    return found[0]!;
  }
  throw new AdminError(400, "InvalidRequest", "give id or search");
}

function findBucket(model: Model, q: { id?: string; globalAlias?: string; search?: string }): BucketEntry {
  let b: BucketEntry | undefined;
  if (q.id) b = model.getBucket(q.id);
  else if (q.globalAlias) b = model.resolveBucket(q.globalAlias);
  else if (q.search) {
    b = model.resolveBucket(q.search);
    if (!b) {
      const byPrefix = model.listBuckets().filter((x) => x.id.startsWith(q.search!));
      if (byPrefix.length > 1) throw new AdminError(400, "InvalidRequest", `"${q.search}" matches ${byPrefix.length} buckets`);
      b = byPrefix[0];
    }
  } else throw new AdminError(400, "InvalidRequest", "give id, globalAlias or search");
  if (!b) throw new AdminError(404, "NoSuchBucket", `bucket ${q.id ?? q.globalAlias ?? q.search} not found`);
  return b;
}

const PermissionsBody = t.Object({ read: t.Optional(t.Boolean()), write: t.Optional(t.Boolean()), owner: t.Optional(t.Boolean()) });
// Local aliases (per key, Garage) do not exist here: every name is global.
const BucketAliasBody = t.Object({ bucketId: t.String(), globalAlias: t.String() });
const BucketKeyBody = t.Object({ bucketId: t.String(), accessKeyId: t.String(), permissions: PermissionsBody });

/** Garage's default index document; Garage makes it mandatory when enabling, we fill it in. */
const DEFAULT_INDEX_DOCUMENT = "index.html";

// Garage sends absent optionals as JSON null, so null is accepted wherever a field is optional.
const UpdateBucketBody = t.Object({
  websiteAccess: t.Optional(
    t.Union([
      t.Object({
        enabled: t.Boolean(),
        indexDocument: t.Optional(t.Union([t.String(), t.Null()])),
        errorDocument: t.Optional(t.Union([t.String(), t.Null()])),
      }),
      t.Null(),
    ]),
  ),
  quotas: t.Optional(
    t.Union([
      t.Object({
        maxSize: t.Optional(t.Union([t.Number(), t.Null()])),
        maxObjects: t.Optional(t.Union([t.Number(), t.Null()])),
      }),
      t.Null(),
    ]),
  ),
});

/** The website setting an UpdateBucket `websiteAccess` asks for (null = serving off). */
function requestedWebsite(wa: { enabled: boolean; indexDocument?: string | null; errorDocument?: string | null }): WebsiteConfig | null {
  if (wa.enabled) return { indexDocument: wa.indexDocument ?? DEFAULT_INDEX_DOCUMENT, errorDocument: wa.errorDocument ?? null };
  // As Garage: documents given with enabled=false are most likely a mistake, not something to drop.
  if (wa.indexDocument != null || wa.errorDocument != null)
    throw new AdminError(400, "InvalidRequest", "cannot give indexDocument or errorDocument when disabling website access");
  return null;
}

/** Gauges read from this node's state at each scrape (counters live where things happen). */
function registerNodeGauges(s: AdminServices, health: () => ReturnType<ReturnType<typeof clusterAdminRoutes>["health"]>): void {
  const startedAtS = Date.now() / 1000;
  metrics.gauge("cluster_healthy", "1 when every partition has all its nodes up", () => (health().status === "healthy" ? 1 : 0));
  metrics.gauge("cluster_available", "1 when every partition has a write quorum", () => (health().status === "unavailable" ? 0 : 1));
  metrics.gauge("cluster_known_nodes", "Nodes this node knows of, itself included", () => health().knownNodes);
  metrics.gauge("cluster_connected_nodes", "Nodes this node is connected to, itself included", () => health().connectedNodes);
  metrics.gauge("cluster_storage_nodes", "Nodes with a storage role in the current layout", () => health().storageNodes);
  metrics.gauge("cluster_storage_nodes_ok", "Storage nodes that are up", () => health().storageNodesOk);
  metrics.gauge("cluster_partitions", "Partitions of the layout", () => health().partitions);
  metrics.gauge("cluster_partitions_quorum", "Partitions with a write quorum of nodes up", () => health().partitionsQuorum);
  metrics.gauge("cluster_partitions_all_ok", "Partitions with all their nodes up", () => health().partitionsAllOk);
  const byWorker = (pick: (w: WorkerInfo) => number | undefined) => () =>
    s.workers().flatMap((w) => {
      const v = pick(w);
      return v === undefined ? [] : [[{ worker: w.name }, v] as const];
    });
  metrics.gauge("worker_queue_length", "Items waiting in a background worker's queue", byWorker((w) => w.queueLength));
  metrics.gauge("worker_passes", "Passes a background worker has finished", byWorker((w) => w.passes));
  metrics.gauge("worker_errors", "Passes of a background worker that ended in an error", byWorker((w) => w.errors));
  metrics.gauge("block_resync_errored_blocks", "Blocks whose last fetch failed", () => s.blockErrors().length);
  metrics.gauge("process_resident_memory_bytes", "Resident memory of this process", () => process.memoryUsage.rss());
  metrics.gauge("process_start_time_seconds", "When this process started (Unix time)", () => startedAtS);
}

export function adminApp(s: AdminServices) {
  const { model } = s;
  const cluster = clusterAdminRoutes(s);
  registerNodeGauges(s, cluster.health);
  const changePermissions = async (body: { bucketId: string; accessKeyId: string; permissions: { read?: boolean; write?: boolean; owner?: boolean } }, allow: boolean) => {
    const bucket = findBucket(model, { id: body.bucketId });
    const key = findKey(model, { id: body.accessKeyId });
    const current = bucket.keys[key.id] ?? { ts: 0, read: false, write: false, owner: false };
    const set = (flag: "read" | "write" | "owner") => (body.permissions[flag] ? allow : current[flag]);
    const updated = await model.setPermissions(bucket, key.id, { read: set("read"), write: set("write"), owner: set("owner") });
    return bucketInfo(model, updated);
  };

  const changeAlias = async (body: { bucketId: string; globalAlias: string }, change: (bucket: BucketEntry, name: string) => Promise<void>) => {
    const bucket = findBucket(model, { id: body.bucketId });
    await change(bucket, body.globalAlias);
    return bucketInfo(model, model.getBucket(bucket.id)!);
  };

  const app = new Elysia({ normalize: false })
    .error({ AdminError })
    .onError(({ code, error: raised, path }) => {
      // Errors of the body parser (onParse below) arrive wrapped in Elysia's ParseError.
      const error = code === "PARSE" && (raised as Error).cause instanceof Error ? ((raised as Error).cause as Error) : raised;
      let status = 500;
      let errCode = "InternalError";
      let message = error instanceof Error ? error.message : String(error);
      if (error instanceof AdminError) {
        status = error.status;
        errCode = error.code;
      } else if (error instanceof RequestBodyTimeout) {
        status = 408;
        errCode = "RequestTimeout";
      } else if (error instanceof ClientDisconnected) {
        status = 400;
        errCode = "IncompleteBody";
      } else if (error instanceof LayoutRequestError) {
        status = 400;
        errCode = "InvalidRequest";
      } else if (error instanceof ModelError) {
        status = error.code === "BucketNotEmpty" || error.code === "BucketAlreadyExists" || error.code === "KeyExists" ? 409 : 400;
        errCode = error.code;
      } else if (error instanceof QuorumError) {
        status = 503;
        errCode = "ServiceUnavailable";
      } else if (code === "VALIDATION") {
        status = 400;
        errCode = "InvalidRequest";
        message = `invalid request body: ${(error as Error).message.split("\n")[0]}`;
      } else if (code === "NOT_FOUND") {
        status = 404;
        errCode = "NoSuchEndpoint";
        message = `no such admin endpoint: ${path}`;
      } else if (code === "PARSE") {
        status = 400;
        errCode = "InvalidRequest";
        message = "request body is not valid JSON";
      }
      return new Response(JSON.stringify({ code: errCode, message, path }), { status, headers: { "content-type": "application/json" } });
    })
    .onRequest(({ request }) => {
      if (!PUBLIC_PATHS.has(new URL(request.url).pathname)) checkAdminRequest(request, s.adminToken);
    })
    .onParse(({ request }) => readJsonBody(request))
    .get("/health", () => {
      const starting = s.readiness.notReadyReason();
      if (starting !== null) return new Response(`Bunker is not ready: ${starting}\n`, { status: 503, headers: { "content-type": "text/plain" } });
      const h = cluster.health();
      if (h.status === "healthy") return new Response("Bunker is fully operational\n", { headers: { "content-type": "text/plain" } });
      if (h.status === "degraded")
        return new Response("Bunker is operational but some storage nodes are unavailable\n", { headers: { "content-type": "text/plain" } });
      return new Response(`Bunker is not available: ${h.partitionsQuorum} of ${h.partitions} partitions have a write quorum\n`, {
        status: 503,
        headers: { "content-type": "text/plain" },
      });
    })
    .get("/metrics", ({ request }) => {
      if (s.metricsToken !== undefined) {
        const auth = request.headers.get("authorization") ?? "";
        if (!auth.startsWith("Bearer ") || !tokenMatches(auth.slice(7).trim(), s.metricsToken))
          throw new AdminError(401, "Unauthorized", "this node's metrics need its metrics_token (Authorization: Bearer <metrics_token>)");
      }
      return new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
    })
    // Public, like /health: a TLS proxy (Caddy's on-demand `ask`) checks a domain before it
    // requests a certificate for it, so that nobody can make it fetch certificates at will.
    .get(
      "/check",
      ({ query }) => {
        if (!query.domain) throw new AdminError(400, "InvalidRequest", "give ?domain=<name>");
        if (!servesDomain(model, s.domains, query.domain)) throw new AdminError(404, "NoSuchBucket", `domain ${query.domain} is not served by this cluster`);
        return new Response(`Domain '${query.domain}' is managed by Bunker\n`, { headers: { "content-type": "text/plain" } });
      },
      { query: t.Object({ domain: t.Optional(t.String()) }) },
    );

  // Everything below needs the admin token (checkAdminRequest, in onRequest above).
  return cluster
    .routes(app as unknown as Elysia)
    .get("/v2/ListWorkers", () => s.workers())
    .post("/v2/LaunchRepairOperation", ({ body }) => s.repair(body.repairType), {
      body: t.Object({ repairType: t.Union([t.Literal("tables"), t.Literal("blocks"), t.Literal("scrub"), t.Literal("lifecycle")]) }),
    })
    .get("/v2/ListBlockErrors", () =>
      s.blockErrors().map((e) => ({ blockHash: e.hash, errorCount: e.errors, nextTryAt: e.nextTry, lastError: e.lastError })),
    )
    .get("/v2/ListKeys", () =>
      model.listKeys().map((k) => ({ id: k.id, name: k.name.v, created: new Date(k.created).toISOString(), expiration: null, expired: false })),
    )
    .get(
      "/v2/GetKeyInfo",
      ({ query }) => keyInfo(model, findKey(model, query), query.showSecretKey === "true"),
      { query: t.Object({ id: t.Optional(t.String()), search: t.Optional(t.String()), showSecretKey: t.Optional(t.String()) }) },
    )
    .post(
      "/v2/CreateKey",
      async ({ body }) => keyInfo(model, await model.createKey(body.name ?? "", body.allow?.createBucket ?? false), true),
      { body: t.Object({ name: t.Optional(t.String()), allow: t.Optional(t.Object({ createBucket: t.Optional(t.Boolean()) })) }) },
    )
    .post(
      "/v2/ImportKey",
      async ({ body }) => {
        if (!ACCESS_KEY_ID_RE.test(body.accessKeyId)) throw new AdminError(400, "InvalidRequest", "access key id must be GK followed by 24 hex characters");
        if (!SECRET_KEY_RE.test(body.secretAccessKey)) throw new AdminError(400, "InvalidRequest", "secret access key must be 64 hex characters");
        const key = await model.createKey(body.name ?? "", false, { id: body.accessKeyId, secret: body.secretAccessKey });
        return keyInfo(model, key, true);
      },
      { body: t.Object({ accessKeyId: t.String(), secretAccessKey: t.String(), name: t.Optional(t.String()) }) },
    )
    .post(
      "/v2/UpdateKey",
      async ({ query, body }) => {
        const key = findKey(model, { id: query.id });
        let allowCreateBucket: boolean | undefined;
        if (body.allow?.createBucket) allowCreateBucket = true;
        if (body.deny?.createBucket) allowCreateBucket = false;
        return keyInfo(model, await model.updateKey(key, { name: body.name, allowCreateBucket }), false);
      },
      {
        query: t.Object({ id: t.String() }),
        body: t.Object({
          name: t.Optional(t.String()),
          allow: t.Optional(t.Object({ createBucket: t.Optional(t.Boolean()) })),
          deny: t.Optional(t.Object({ createBucket: t.Optional(t.Boolean()) })),
        }),
      },
    )
    .post(
      "/v2/DeleteKey",
      async ({ query }) => {
        await model.deleteKey(findKey(model, { id: query.id }));
        return {};
      },
      { query: t.Object({ id: t.String() }) },
    )
    .get("/v2/ListBuckets", () =>
      model.listBuckets().map((b) => ({ id: b.id, created: new Date(b.created).toISOString(), globalAliases: model.aliasesOf(b.id), localAliases: [] })),
    )
    .get("/v2/GetBucketInfo", ({ query }) => bucketInfo(model, findBucket(model, query)), {
      query: t.Object({ id: t.Optional(t.String()), globalAlias: t.Optional(t.String()), search: t.Optional(t.String()) }),
    })
    .post(
      "/v2/CreateBucket",
      async ({ body }) => {
        if (!isValidBucketName(body.globalAlias)) throw new AdminError(400, "InvalidBucketName", `invalid bucket name "${body.globalAlias}"`);
        if (model.resolveBucket(body.globalAlias)) throw new AdminError(409, "BucketAlreadyExists", `bucket ${body.globalAlias} already exists`);
        return bucketInfo(model, await model.createBucket(body.globalAlias));
      },
      { body: t.Object({ globalAlias: t.String() }) },
    )
    .post(
      "/v2/UpdateBucket",
      async ({ query, body }) => {
        let bucket = findBucket(model, { id: query.id });
        if (body.websiteAccess) {
          // Routing rules are set through S3 only: changing the documents keeps them.
          const website = requestedWebsite(body.websiteAccess);
          const rules = bucket.website.v?.routingRules;
          bucket = await model.setWebsite(bucket, website && rules ? { ...website, routingRules: rules } : website);
        }
        // As Garage: the quotas given replace the previous ones; a missing limit is none.
        if (body.quotas) bucket = await model.setQuotas(bucket, { maxSize: body.quotas.maxSize ?? null, maxObjects: body.quotas.maxObjects ?? null });
        return bucketInfo(model, bucket);
      },
      { query: t.Object({ id: t.String() }), body: UpdateBucketBody },
    )
    .post(
      "/v2/DeleteBucket",
      async ({ query }) => {
        await model.deleteBucket(findBucket(model, { id: query.id }));
        return {};
      },
      { query: t.Object({ id: t.String() }) },
    )
    .get("/v2/InspectObject", ({ query }) => inspectObject(model, findBucket(model, { id: query.bucketId }), query.key), {
      query: t.Object({ bucketId: t.String(), key: t.String() }),
    })
    .post("/v2/AddBucketAlias", ({ body }) => changeAlias(body, (b, name) => model.addAlias(b, name)), { body: BucketAliasBody })
    .post("/v2/RemoveBucketAlias", ({ body }) => changeAlias(body, (b, name) => model.removeAlias(b, name)), { body: BucketAliasBody })
    .post(
      "/v2/CleanupIncompleteUploads",
      async ({ body }) => {
        const bucket = findBucket(model, { id: body.bucketId });
        return { uploadsDeleted: await model.cleanupUploads(bucket, s.now() - body.olderThanSecs * 1000) };
      },
      { body: t.Object({ bucketId: t.String(), olderThanSecs: t.Integer({ minimum: 0 }) }) },
    )
    .post("/v2/AllowBucketKey", ({ body }) => changePermissions(body, true), { body: BucketKeyBody })
    .post("/v2/DenyBucketKey", ({ body }) => changePermissions(body, false), { body: BucketKeyBody });
}
