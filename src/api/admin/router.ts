// The admin API (Garage v2 names, JSON, bearer token): keys, buckets, permissions, status,
// health. The CLI is its main client.
import { Elysia, t } from "elysia";
import { timingSafeEqual } from "node:crypto";
import { ModelError, type Model } from "../../model/model";
import type { KeyEntry } from "../../model/key";
import type { BucketEntry } from "../../model/bucket";
import { isValidBucketName } from "../../model/bucket";
import { visibleVersion } from "../../model/object";
import { ACCESS_KEY_ID_RE, SECRET_KEY_RE } from "../../util/ids";
import { QuorumError } from "../../table/quorum";
import { clusterAdminRoutes, LayoutRequestError, type ClusterAdminServices } from "./cluster";
import type { WorkerInfo } from "../../util/worker-stats";

export type RepairKind = "tables" | "blocks" | "scrub";

export interface AdminServices extends ClusterAdminServices {
  model: Model;
  blockErrors: () => { hash: string; errors: number; nextTry: number; lastError: string | null }[];
  /** The background workers of this node and what they have been doing. */
  workers: () => WorkerInfo[];
  /**
   * Starts a repair: "tables" = a full anti-entropy pass, "blocks" = check every block held,
   * "scrub" = read every stored block and check it against its hash.
   */
  repair: (kind: RepairKind) => { queued?: number };
  adminToken: string | undefined;
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
  let objects = 0;
  let bytes = 0;
  let start = "";
  for (;;) {
    const page = model.objects.local.range(b.id, { start, limit: 1000 });
    for (const o of page) {
      const v = visibleVersion(o);
      if (v) {
        objects++;
        bytes += v.state.data.meta.size;
      }
    }
    if (page.length < 1000) break;
    start = page[page.length - 1]!.key + "\u0000";
  }
  const uploads = model.uploads.local.range(b.id, { limit: 100_000 }).filter((u) => !u.deleted).length;
  return {
    id: b.id,
    created: new Date(b.created).toISOString(),
    globalAliases: model.aliasesOf(b.id),
    websiteAccess: b.website.v !== null,
    keys: Object.entries(b.keys)
      .filter(([, p]) => p.read || p.write || p.owner)
      .map(([id, p]) => ({
        accessKeyId: id,
        name: model.getKey(id)?.name.v ?? "",
        permissions: { read: p.read, write: p.write, owner: p.owner },
        bucketLocalAliases: [],
      })),
    objects,
    bytes,
    unfinishedUploads: uploads,
  };
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
const BucketKeyBody = t.Object({ bucketId: t.String(), accessKeyId: t.String(), permissions: PermissionsBody });

export function adminApp(s: AdminServices) {
  const { model } = s;
  const cluster = clusterAdminRoutes(s);
  const changePermissions = async (body: { bucketId: string; accessKeyId: string; permissions: { read?: boolean; write?: boolean; owner?: boolean } }, allow: boolean) => {
    const bucket = findBucket(model, { id: body.bucketId });
    const key = findKey(model, { id: body.accessKeyId });
    const current = bucket.keys[key.id] ?? { ts: 0, read: false, write: false, owner: false };
    const set = (flag: "read" | "write" | "owner") => (body.permissions[flag] ? allow : current[flag]);
    const updated = await model.setPermissions(bucket, key.id, { read: set("read"), write: set("write"), owner: set("owner") });
    return bucketInfo(model, updated);
  };

  return new Elysia({ normalize: false })
    .error({ AdminError })
    .onError(({ code, error, path }) => {
      let status = 500;
      let errCode = "InternalError";
      let message = error instanceof Error ? error.message : String(error);
      if (error instanceof AdminError) {
        status = error.status;
        errCode = error.code;
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
    .get("/health", () => {
      const h = cluster.health();
      if (h.status === "healthy") return new Response("Bunker is fully operational\n", { headers: { "content-type": "text/plain" } });
      if (h.status === "degraded")
        return new Response("Bunker is operational but some storage nodes are unavailable\n", { headers: { "content-type": "text/plain" } });
      return new Response(`Bunker is not available: ${h.partitionsQuorum} of ${h.partitions} partitions have a write quorum\n`, {
        status: 503,
        headers: { "content-type": "text/plain" },
      });
    })
    .guard(
      {
        beforeHandle({ request }) {
          if (!s.adminToken) throw new AdminError(403, "AccessDenied", "no admin_token is configured on this node: the admin API is disabled");
          const auth = request.headers.get("authorization") ?? "";
          if (!auth.startsWith("Bearer ")) throw new AdminError(401, "Unauthorized", "missing bearer token (Authorization: Bearer <admin_token>)");
          if (!tokenMatches(auth.slice(7).trim(), s.adminToken)) throw new AdminError(403, "AccessDenied", "invalid admin token");
        },
      },
      (app) =>
        // Added on the guarded app itself, so the token check covers them too.
        cluster
          .routes(app as unknown as Elysia)
          .get("/v2/ListWorkers", () => s.workers())
          .post("/v2/LaunchRepairOperation", ({ body }) => s.repair(body.repairType), {
            body: t.Object({ repairType: t.Union([t.Literal("tables"), t.Literal("blocks"), t.Literal("scrub")]) }),
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
            "/v2/DeleteBucket",
            async ({ query }) => {
              await model.deleteBucket(findBucket(model, { id: query.id }));
              return {};
            },
            { query: t.Object({ id: t.String() }) },
          )
          .post("/v2/AllowBucketKey", ({ body }) => changePermissions(body, true), { body: BucketKeyBody })
          .post("/v2/DenyBucketKey", ({ body }) => changePermissions(body, false), { body: BucketKeyBody }),
    );
}
