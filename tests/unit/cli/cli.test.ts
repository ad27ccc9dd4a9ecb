// The CLI against a fake admin API: a Bun.serve on port 0 that records every request and
// answers canned JSON, reached through a temporary TOML config like a real deployment.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../../../src/cli/index";
import { adminUrlFromConfig } from "../../../src/cli/admin-client";
import { loadConfig } from "../../../src/config";
import pkg from "../../../package.json" with { type: "json" };
import { runCapturing } from "./fake-admin";

const TOKEN = "test-admin-token";
const KEY_ID = "GK31c2f218a2e44f485b94239e";
const SECRET = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
const BUCKET_ID = "e6a14cd6a27f48684579ec6b381c078ab11697e6bc8513b72b2f5307e25fff9b";

const keyInfo = (withSecret: boolean) => ({
  accessKeyId: KEY_ID,
  name: "alice",
  secretAccessKey: withSecret ? SECRET : null,
  created: "2025-01-02T03:04:05.000Z",
  expiration: null,
  expired: false,
  permissions: { createBucket: false },
  buckets: [{ id: BUCKET_ID, globalAliases: ["photos"], localAliases: [], permissions: { read: true, write: true, owner: false } }],
});

const bucketInfo = (perms = { read: true, write: true, owner: false }) => ({
  id: BUCKET_ID,
  created: "2025-01-02T03:04:05.000Z",
  globalAliases: ["photos"],
  websiteAccess: false,
  websiteConfig: null as { indexDocument: string; errorDocument: string | null } | null,
  keys: [{ accessKeyId: KEY_ID, name: "alice", permissions: perms, bucketLocalAliases: [] }],
  objects: 3,
  bytes: 1536 * 1024,
  unfinishedUploads: 0,
});

const clusterStatus = {
  node: "a".repeat(64),
  layoutVersion: 1,
  nodes: [
    {
      id: "a".repeat(64),
      garageVersion: "0.1.0+abc123",
      addr: "127.0.0.1:3901",
      hostname: "node1",
      isUp: true,
      lastSeenSecsAgo: null,
      role: { zone: "dc1", capacity: 1024 ** 3, tags: ["ssd"] },
      dataPartition: { available: 512 * 1024 ** 2, total: 1024 ** 3 },
    },
    {
      id: "b".repeat(64),
      addr: "10.0.0.2:3901",
      hostname: "node2",
      isUp: false,
      lastSeenSecsAgo: 42,
      role: { zone: "dc2", capacity: null, tags: [] },
    },
  ],
};

const clusterHealth = {
  status: "degraded",
  knownNodes: 2,
  connectedNodes: 1,
  storageNodes: 1,
  storageNodesOk: 1,
  partitions: 256,
  partitionsQuorum: 256,
  partitionsAllOk: 256,
};

interface Recorded {
  method: string;
  endpoint: string;
  query: Record<string, string>;
  body: unknown;
  auth: string | null;
}

type Handler = (query: Record<string, string>, body: any) => Response;

const json = (value: unknown, status = 200) => Response.json(value, { status });
const apiError = (status: number, code: string, message: string) =>
  json({ code, message, path: "/v2/..." }, status);

const ROUTES: Record<string, Handler> = {
  GetClusterStatus: () => json(clusterStatus),
  GetClusterHealth: () => json(clusterHealth),
  ListKeys: () =>
    json([
      { id: KEY_ID, name: "alice", created: "2025-01-02T03:04:05.000Z", expiration: null, expired: false },
      { id: "GK000000000000000000000001", name: "bob", created: null, expiration: null, expired: false },
    ]),
  GetKeyInfo: (q) => {
    const ref = q.id ?? q.search;
    if (ref === KEY_ID || ref === "alice" || ref === "GK31") return json(keyInfo(q.showSecretKey === "true"));
    return apiError(404, "NoSuchAccessKey", `Access key not found: ${ref}`);
  },
  CreateKey: (_q, body) => json({ ...keyInfo(true), name: body.name, buckets: [] }),
  ImportKey: (_q, body) =>
    json({ ...keyInfo(false), accessKeyId: body.accessKeyId, name: body.name ?? "Imported key", buckets: [] }),
  UpdateKey: (_q, body) => json({ ...keyInfo(false), permissions: { createBucket: body.allow !== undefined } }),
  DeleteKey: () => new Response(null, { status: 200 }),
  ListBuckets: () => json([{ id: BUCKET_ID, created: "2025-01-02T03:04:05.000Z", globalAliases: ["photos"], localAliases: [] }]),
  GetBucketInfo: (q) => {
    if (q.id === BUCKET_ID || q.globalAlias === "photos" || (q.search && BUCKET_ID.startsWith(q.search))) {
      return json(bucketInfo());
    }
    return apiError(404, "NoSuchBucket", "Bucket not found");
  },
  CreateBucket: (_q, body) => json({ ...bucketInfo(), globalAliases: [body.globalAlias], keys: [] }),
  DeleteBucket: () => json({}),
  AllowBucketKey: (_q, body) => json(bucketInfo({ read: true, write: true, owner: body.permissions.owner })),
  DenyBucketKey: () => json(bucketInfo({ read: false, write: false, owner: false })),
  // Echoes the requested website setting and quotas the way the node stores them.
  UpdateBucket: (_q, body) => {
    const info = body.quotas === undefined ? bucketInfo() : { ...bucketInfo(), quotas: body.quotas };
    const wa = body.websiteAccess;
    if (wa === undefined) return json(info);
    const websiteConfig = wa.enabled ? { indexDocument: wa.indexDocument ?? "index.html", errorDocument: wa.errorDocument ?? null } : null;
    return json({ ...info, websiteAccess: websiteConfig !== null, websiteConfig });
  },
};

/** The routes as they start, for handlers that answer some requests and defer the others. */
const ROUTES_DEFAULT: Readonly<Record<string, Handler>> = { ...ROUTES };

/** The body of the one request made to `endpoint`. */
function fakeBody(endpoint: string): unknown {
  const found = requests.filter((r) => r.endpoint === endpoint);
  if (found.length !== 1) throw new Error(`expected one ${endpoint} request, got ${found.length}`);
  return found[0]!.body;
}

let server: ReturnType<typeof Bun.serve>;
let requests: Recorded[] = [];
let dir: string;
let configPath: string;
/** Answer for the next request instead of the route, to test error paths. */
let override: Response | undefined;

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const endpoint = url.pathname.replace(/^\/v2\//, "");
      const text = await req.text();
      const body = text ? JSON.parse(text) : undefined;
      const query = Object.fromEntries(url.searchParams);
      requests.push({ method: req.method, endpoint, query, body, auth: req.headers.get("authorization") });
      if (override) return override;
      if (req.headers.get("authorization") !== `Bearer ${TOKEN}`) return apiError(403, "Forbidden", "bad token");
      const route = ROUTES[endpoint];
      return route ? route(query, body) : apiError(400, "UnknownEndpoint", endpoint);
    },
  });
  dir = mkdtempSync(join(tmpdir(), "bunker-cli-"));
  configPath = writeConfig("main.toml", `127.0.0.1:${server.port}`, TOKEN);
});

afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  requests = [];
  override = undefined;
});

function writeConfig(name: string, adminAddr: string, token?: string): string {
  const path = join(dir, name);
  const tokenLine = token === undefined ? "" : `admin_token = "${token}"\n`;
  writeFileSync(
    path,
    `metadata_dir = "${join(dir, name, "..", "meta")}"\ndata_dir = "${join(dir, "data")}"\n\n[admin]\napi_bind_addr = "${adminAddr}"\n${tokenLine}`,
  );
  return path;
}

const cli = runCapturing;

const withConfig = (...args: string[]) => cli(["-c", configPath, ...args]);

describe("keys", () => {
  test("key create --json prints the key with its secret", async () => {
    const r = await withConfig("key", "create", "alice", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    expect(out.accessKeyId).toBe(KEY_ID);
    expect(out.secretAccessKey).toBe(SECRET);
    expect(requests).toEqual([
      { method: "POST", endpoint: "CreateKey", query: {}, body: { name: "alice" }, auth: `Bearer ${TOKEN}` },
    ]);
  });

  test("key create prints a readable block with the secret", async () => {
    const r = await withConfig("key", "create", "alice");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("==== ACCESS KEY INFORMATION ====");
    expect(r.stdout).toMatch(new RegExp(`Key ID:\\s+${KEY_ID}`));
    expect(r.stdout).toMatch(new RegExp(`Secret key:\\s+${SECRET}`));
  });

  test("--json may also come before the command", async () => {
    const r = await cli(["-c", configPath, "--json", "key", "list"]);
    expect(JSON.parse(r.stdout).map((k: { id: string }) => k.id)).toEqual([KEY_ID, "GK000000000000000000000001"]);
  });

  test("key list prints a table", async () => {
    const r = await withConfig("key", "list");
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+Created\s+Name\s+Expiration$/);
    expect(lines[1]).toMatch(new RegExp(`^${KEY_ID}\\s+2025-01-02T03:04:05.000Z\\s+alice\\s+never$`));
    expect(lines[2]).toMatch(/^GK000000000000000000000001\s+-\s+bob\s+never$/);
  });

  test("key info searches and only asks for the secret with --show-secret", async () => {
    let r = await withConfig("key", "info", "alice");
    expect(r.stdout).toMatch(/Secret key:\s+\(redacted\)/);
    expect(r.stdout).toMatch(/RW-\s+e6a14cd6a27f4868\s+photos/);
    expect(requests[0]!.query).toEqual({ search: "alice" });
    r = await withConfig("key", "info", "GK31", "--show-secret");
    expect(r.stdout).toContain(SECRET);
    expect(requests[1]!.query).toEqual({ search: "GK31", showSecretKey: "true" });
  });

  test("key import sends id, secret and name", async () => {
    const r = await withConfig("key", "import", KEY_ID, SECRET, "-n", "migrated", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[0]!.body).toEqual({ accessKeyId: KEY_ID, secretAccessKey: SECRET, name: "migrated" });
    expect(JSON.parse(r.stdout).name).toBe("migrated");
  });

  test("key delete without --yes refuses before any request", async () => {
    const r = await withConfig("key", "delete", "alice");
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toBe("error: refusing to delete key alice without --yes\n");
    expect(requests).toEqual([]);
  });

  test("key delete --yes resolves the key, then deletes it by id", async () => {
    const r = await withConfig("key", "delete", "alice", "--yes");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(`Key ${KEY_ID} (alice) was deleted.\n`);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetKeyInfo", { search: "alice" }],
      ["POST", "DeleteKey", { id: KEY_ID }],
    ]);
  });

  test("key allow/deny --create-bucket", async () => {
    let r = await withConfig("key", "allow", "--create-bucket", "alice", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(JSON.parse(r.stdout).permissions.createBucket).toBe(true);
    expect(requests[1]).toMatchObject({ endpoint: "UpdateKey", query: { id: KEY_ID }, body: { allow: { createBucket: true } } });
    r = await withConfig("key", "deny", "alice", "--create-bucket");
    expect(r.stdout).toMatch(/Can create buckets:\s+false/);
    expect(requests[3]).toMatchObject({ endpoint: "UpdateKey", body: { deny: { createBucket: true } } });
  });

  test("key allow without --create-bucket is a usage error", async () => {
    const r = await withConfig("key", "allow", "alice");
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toBe("error: nothing to allow: give --create-bucket\n");
    expect(requests).toEqual([]);
  });

  test("an API error is one line with its code, exit 1", async () => {
    const r = await withConfig("key", "info", "nobody");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Access key not found: nobody (NoSuchAccessKey)\n");
    expect(r.stdout).toBe("");
  });
});

describe("buckets", () => {
  test("bucket create NAME", async () => {
    const r = await withConfig("bucket", "create", "videos");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[0]).toMatchObject({ method: "POST", endpoint: "CreateBucket", body: { globalAlias: "videos" } });
    expect(r.stdout).toMatch(/Global aliases:\s+videos/);
  });

  test("bucket list shows id prefixes", async () => {
    const r = await withConfig("bucket", "list");
    expect(r.stdout.trimEnd().split("\n")).toEqual([
      expect.stringMatching(/^ID\s+Created\s+Global aliases\s+Local aliases$/),
      expect.stringMatching(/^e6a14cd6a27f4868\s+2025-01-02T03:04:05.000Z\s+photos$/),
    ]);
  });

  test("bucket info by name, by full id, and by the id prefix from bucket list", async () => {
    let r = await withConfig("bucket", "info", "photos");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toMatch(/Size:\s+1.5 MiB \(1572864 B\)/);
    expect(r.stdout).toMatch(new RegExp(`RW-\\s+${KEY_ID}\\s+alice`));
    expect(requests.map((q) => q.query)).toEqual([{ globalAlias: "photos" }]);

    requests = [];
    r = await withConfig("bucket", "info", BUCKET_ID, "--json");
    expect(JSON.parse(r.stdout).id).toBe(BUCKET_ID);
    expect(requests.map((q) => q.query)).toEqual([{ id: BUCKET_ID }]);

    requests = [];
    r = await withConfig("bucket", "info", "e6a14cd6a27f4868");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => q.query)).toEqual([{ globalAlias: "e6a14cd6a27f4868" }, { search: "e6a14cd6a27f4868" }]);
  });

  test("an unknown bucket name is not retried as an id", async () => {
    const r = await withConfig("bucket", "info", "nope");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Bucket not found (NoSuchBucket)\n");
    expect(requests.length).toBe(1);
  });

  test("bucket delete needs --yes, then resolves the alias and deletes by id", async () => {
    let r = await withConfig("bucket", "delete", "photos");
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toBe("error: refusing to delete bucket photos without --yes\n");
    expect(requests).toEqual([]);

    r = await withConfig("bucket", "delete", "--yes", "photos");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(`Bucket photos (${BUCKET_ID}) was deleted.\n`);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetBucketInfo", { globalAlias: "photos" }],
      ["POST", "DeleteBucket", { id: BUCKET_ID }],
    ]);
  });

  test("bucket allow resolves bucket and key, sends only the requested flags", async () => {
    const r = await withConfig("bucket", "allow", "--read", "--owner", "photos", "--key", "alice");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(`Permissions of key ${KEY_ID} (alice) on bucket photos: RWO\n`);
    expect(requests.map((q) => q.endpoint)).toEqual(["GetBucketInfo", "GetKeyInfo", "AllowBucketKey"]);
    expect(requests[2]!.body).toEqual({
      bucketId: BUCKET_ID,
      accessKeyId: KEY_ID,
      permissions: { read: true, write: false, owner: true },
    });
  });

  test("bucket deny --json prints the bucket", async () => {
    const r = await withConfig("bucket", "deny", "--write", "photos", "--key=alice", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(JSON.parse(r.stdout).keys[0].permissions).toEqual({ read: false, write: false, owner: false });
    expect(requests[2]).toMatchObject({ endpoint: "DenyBucketKey", body: { permissions: { read: false, write: true, owner: false } } });
  });

  test("bucket allow needs a permission and --key", async () => {
    let r = await withConfig("bucket", "allow", "photos", "--key", "alice");
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toBe("error: nothing to allow: give --read, --write and/or --owner\n");
    r = await withConfig("bucket", "allow", "photos", "--read");
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toBe("error: missing --key KEY\n");
    expect(requests).toEqual([]);
  });
});

describe("bucket website", () => {
  test("--allow resolves the bucket, sends index.html by default and says where it is served", async () => {
    const r = await withConfig("bucket", "website", "--allow", "photos");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetBucketInfo", { globalAlias: "photos" }],
      ["POST", "UpdateBucket", { id: BUCKET_ID }],
    ]);
    expect(requests[1]!.body).toEqual({ websiteAccess: { enabled: true, indexDocument: "index.html" } });
    expect(r.stdout).toMatch(/Website access:\s+true\n\s+index document:\s+index.html\n\s+error document:\s+\(not defined\)/);
    const last = r.stdout.trimEnd().split("\n").at(-1)!;
    expect(last).toContain("web endpoint");
    expect(last).toContain("host photos");
  });

  test("-i and -e set the documents; --json prints the bucket", async () => {
    const r = await withConfig("bucket", "website", "photos", "--allow", "-i", "home.html", "--error-document", "errors/404.html", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[1]!.body).toEqual({ websiteAccess: { enabled: true, indexDocument: "home.html", errorDocument: "errors/404.html" } });
    const out = JSON.parse(r.stdout);
    expect(out.websiteAccess).toBe(true);
    expect(out.websiteConfig).toEqual({ indexDocument: "home.html", errorDocument: "errors/404.html" });
  });

  test("--allow without -e keeps the error document already set, as Garage", async () => {
    const original = ROUTES.GetBucketInfo!;
    ROUTES.GetBucketInfo = () =>
      json({ ...bucketInfo(), websiteAccess: true, websiteConfig: { indexDocument: "index.html", errorDocument: "oops.html" } });
    try {
      const r = await withConfig("bucket", "website", "--allow", "photos", "-i", "start.html");
      expect(r.code).toBe(EXIT_OK);
      expect(requests[1]!.body).toEqual({ websiteAccess: { enabled: true, indexDocument: "start.html", errorDocument: "oops.html" } });
    } finally {
      ROUTES.GetBucketInfo = original;
    }
  });

  test("--deny turns website access off and prints no web endpoint line", async () => {
    const r = await withConfig("bucket", "website", "--deny", "photos");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[1]).toMatchObject({ endpoint: "UpdateBucket", query: { id: BUCKET_ID }, body: { websiteAccess: { enabled: false } } });
    expect(r.stdout).toMatch(/Website access:\s+false\n/);
    expect(r.stdout).not.toContain("index document");
    expect(r.stdout).not.toContain("web endpoint");
  });

  test("bucket info shows the documents when website access is on", async () => {
    const original = ROUTES.GetBucketInfo!;
    ROUTES.GetBucketInfo = () =>
      json({ ...bucketInfo(), websiteAccess: true, websiteConfig: { indexDocument: "home.html", errorDocument: "404.html" } });
    try {
      const r = await withConfig("bucket", "info", "photos");
      expect(r.stdout).toMatch(/index document:\s+home.html\n\s+error document:\s+404.html/);
    } finally {
      ROUTES.GetBucketInfo = original;
    }
  });

  const refused: [string[], string][] = [
    [["bucket", "website", "photos"], "error: give exactly one of --allow or --deny\n"],
    [["bucket", "website", "--allow", "--deny", "photos"], "error: give exactly one of --allow or --deny\n"],
    [["bucket", "website", "--deny", "photos", "-i", "a.html"], "error: --index-document and --error-document only go with --allow\n"],
    [["bucket", "website", "--allow"], "error: missing BUCKET (see 'bunker bucket website --help')\n"],
  ];
  for (const [args, message] of refused) {
    test(`bunker ${args.join(" ")} is a usage error before any request`, async () => {
      const r = await withConfig(...args);
      expect(r.code).toBe(EXIT_USAGE);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
      expect(requests).toEqual([]);
    });
  }

  test("help lists the flags", async () => {
    const r = await cli(["bucket", "website", "--help"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("Usage: bunker bucket website BUCKET [options]");
    expect(r.stdout).toMatch(/-i, --index-document NAME\s+appended/);
    expect(r.stdout).toMatch(/-e, --error-document KEY\s+object served/);
  });
});

describe("bucket set-quotas", () => {
  /** Runs with GetBucketInfo answering these current quotas (none: a node older than quotas). */
  async function withQuotas(quotas: { maxSize: number | null; maxObjects: number | null } | undefined, ...args: string[]) {
    const original = ROUTES.GetBucketInfo!;
    ROUTES.GetBucketInfo = () => json(quotas === undefined ? bucketInfo() : { ...bucketInfo(), quotas });
    try {
      return await withConfig(...args);
    } finally {
      ROUTES.GetBucketInfo = original;
    }
  }

  test("both flags: reads the bucket, then sends both limits; Garage's decimal G", async () => {
    const r = await withConfig("bucket", "set-quotas", "photos", "--max-size", "10G", "--max-objects", "1000");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetBucketInfo", { globalAlias: "photos" }],
      ["POST", "UpdateBucket", { id: BUCKET_ID }],
    ]);
    expect(requests[1]!.body).toEqual({ quotas: { maxSize: 10_000_000_000, maxObjects: 1000 } });
    expect(r.stdout).toMatch(/Quotas:\n\s+max size:\s+9\.3 GiB \(10000000000 B\)\n\s+max objects:\s+1000\n/);
  });

  test("none lifts a limit and keeps the other one", async () => {
    const r = await withQuotas({ maxSize: 5_000_000, maxObjects: 10 }, "bucket", "set-quotas", "photos", "--max-size", "none");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[1]!.body).toEqual({ quotas: { maxSize: null, maxObjects: 10 } });
    expect(r.stdout).toMatch(/max size:\s+none\n\s+max objects:\s+10\n/);
  });

  test("a flag not given keeps the current value", async () => {
    const r = await withQuotas({ maxSize: 5_000_000, maxObjects: 10 }, "bucket", "set-quotas", "photos", "--max-objects", "20");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[1]!.body).toEqual({ quotas: { maxSize: 5_000_000, maxObjects: 20 } });
  });

  test("a node that sends no quotas has none: the other field goes as null", async () => {
    const r = await withQuotas(undefined, "bucket", "set-quotas", "photos", "--max-size", "1M");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[1]!.body).toEqual({ quotas: { maxSize: 1_000_000, maxObjects: null } });
  });

  test("both none clears the quotas, and bucket info then shows no Quotas lines", async () => {
    const r = await withQuotas({ maxSize: 1, maxObjects: 1 }, "bucket", "set-quotas", "photos", "--max-size", "none", "--max-objects", "none");
    expect(r.code).toBe(EXIT_OK);
    expect(requests[1]!.body).toEqual({ quotas: { maxSize: null, maxObjects: null } });
    expect(r.stdout).not.toContain("Quotas");
  });

  const sizes: [string, number][] = [
    ["1048576", 1_048_576],
    ["0", 0],
    ["500M", 500_000_000],
    ["1.5T", 1_500_000_000_000],
    ["100KB", 100_000],
    ["100KiB", 102_400],
    ["2Gi", 2 * 1024 ** 3],
    ["10 gb", 10_000_000_000],
    ["512B", 512],
  ];
  for (const [text, bytes] of sizes) {
    test(`--max-size ${text} sends ${bytes}`, async () => {
      const r = await withConfig("bucket", "set-quotas", "photos", "--max-size", text);
      expect(r.code).toBe(EXIT_OK);
      expect(requests[1]!.body).toEqual({ quotas: { maxSize: bytes, maxObjects: null } });
    });
  }

  test("--json prints the updated bucket", async () => {
    const r = await withConfig("bucket", "set-quotas", "photos", "--max-size", "2GiB", "--max-objects", "5", "--json");
    expect(r.code).toBe(EXIT_OK);
    const out = JSON.parse(r.stdout);
    expect(out.id).toBe(BUCKET_ID);
    expect(out.quotas).toEqual({ maxSize: 2 * 1024 ** 3, maxObjects: 5 });
  });

  test("bucket info shows the quotas, with none for an unset limit", async () => {
    const r = await withQuotas({ maxSize: null, maxObjects: 250 }, "bucket", "info", "photos");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toMatch(/Quotas:\n\s+max size:\s+none\n\s+max objects:\s+250\n/);
  });

  test("bucket info has no Quotas lines without limits, or from a node that sends none", async () => {
    for (const quotas of [{ maxSize: null, maxObjects: null }, undefined]) {
      const r = await withQuotas(quotas, "bucket", "info", "photos");
      expect(r.code).toBe(EXIT_OK);
      expect(r.stdout).not.toContain("Quotas");
      expect(r.stdout).not.toContain("max size");
    }
  });

  const refused: [string[], string][] = [
    [["photos"], "error: nothing to set: give --max-size and/or --max-objects\n"],
    [["photos", "--max-size", "-5"], "error: --max-size cannot be negative\n"],
    [["photos", "--max-objects", "-1"], "error: --max-objects cannot be negative\n"],
    [["photos", "--max-size", "10X"], "error: --max-size: cannot read size '10X' (e.g. 10G, 500M, 1.5T, 100KiB or a number of bytes, or none)\n"],
    [["photos", "--max-size", "1.5"], "error: --max-size: cannot read size '1.5' (e.g. 10G, 500M, 1.5T, 100KiB or a number of bytes, or none)\n"],
    [["photos", "--max-size", "99999P"], "error: --max-size: '99999P' is too large\n"],
    [["photos", "--max-objects", "1.5"], "error: --max-objects: cannot read '1.5' (a whole number of objects, or none)\n"],
    [["photos", "--max-objects", "10k"], "error: --max-objects: cannot read '10k' (a whole number of objects, or none)\n"],
    // A valid flag does not carry an invalid one through.
    [["photos", "--max-size", "1G", "--max-objects", "lots"], "error: --max-objects: cannot read 'lots' (a whole number of objects, or none)\n"],
    [["--max-size", "1G"], "error: missing BUCKET (see 'bunker bucket set-quotas --help')\n"],
  ];
  for (const [args, message] of refused) {
    test(`bunker bucket set-quotas ${args.join(" ")} is a usage error before any request`, async () => {
      const r = await withConfig("bucket", "set-quotas", ...args);
      expect(r.code).toBe(EXIT_USAGE);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
      expect(requests).toEqual([]);
    });
  }

  test("an API error is one line, exit 1", async () => {
    const original = ROUTES.UpdateBucket!;
    ROUTES.UpdateBucket = () => apiError(400, "InvalidRequest", "maxSize must be a non-negative integer");
    try {
      const r = await withConfig("bucket", "set-quotas", "photos", "--max-objects", "1");
      expect(r.code).toBe(EXIT_FAILURE);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain("maxSize must be a non-negative integer");
    } finally {
      ROUTES.UpdateBucket = original;
    }
  });

  test("help lists the flags", async () => {
    const r = await cli(["bucket", "set-quotas", "--help"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("Usage: bunker bucket set-quotas BUCKET [options]");
    expect(r.stdout).toMatch(/--max-size SIZE\s+total size/);
    expect(r.stdout).toMatch(/--max-objects N\s+number of objects/);
  });
});

/** Runs `fn` with some routes replaced, restoring them afterwards. */
async function withRoutes<T>(replaced: Record<string, Handler>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(replaced).map((name) => [name, ROUTES[name]]));
  Object.assign(ROUTES, replaced);
  try {
    return await fn();
  } finally {
    for (const [name, handler] of Object.entries(saved)) {
      if (handler === undefined) delete ROUTES[name];
      else ROUTES[name] = handler;
    }
  }
}

describe("bucket alias and unalias", () => {
  /** A node where BUCKET_ID is called photos and pics, and "taken" belongs to another bucket. */
  const aliasRoutes: Record<string, Handler> = {
    GetBucketInfo: (q) => {
      if (q.globalAlias === "pics") return json({ ...bucketInfo(), globalAliases: ["photos", "pics"] });
      return ROUTES_DEFAULT.GetBucketInfo!(q, undefined);
    },
    AddBucketAlias: (_q, body) => {
      if (body.globalAlias === "taken") return apiError(409, "BucketAlreadyExists", "Bucket already exists: taken");
      if (body.globalAlias === "Bad_Name") return apiError(400, "InvalidBucketName", "Invalid bucket name: Bad_Name");
      return json({ ...bucketInfo(), globalAliases: ["photos", body.globalAlias] });
    },
    RemoveBucketAlias: (_q, body) => {
      if (body.globalAlias === "photos") {
        return apiError(400, "InvalidRequest", "Bucket photos has no other global alias; it would have none left");
      }
      return json(bucketInfo());
    },
  };
  const run = (...args: string[]) => withRoutes(aliasRoutes, () => withConfig(...args));

  test("alias resolves the bucket by name, adds the alias by id and prints the bucket", async () => {
    const r = await run("bucket", "alias", "photos", "pics");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetBucketInfo", { globalAlias: "photos" }],
      ["POST", "AddBucketAlias", {}],
    ]);
    expect(requests[1]!.body).toEqual({ bucketId: BUCKET_ID, globalAlias: "pics" });
    expect(r.stdout).toContain("==== BUCKET INFORMATION ====");
    expect(r.stdout).toMatch(/Global aliases:\s+photos, pics\n/);
  });

  test("alias takes an id prefix; --json prints the bucket", async () => {
    const r = await run("bucket", "alias", "e6a14cd6a27f4868", "pics", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => q.query)).toEqual([{ globalAlias: "e6a14cd6a27f4868" }, { search: "e6a14cd6a27f4868" }, {}]);
    expect(fakeBody("AddBucketAlias")).toEqual({ bucketId: BUCKET_ID, globalAlias: "pics" });
    const out = JSON.parse(r.stdout);
    expect(out.id).toBe(BUCKET_ID);
    expect(out.globalAliases).toEqual(["photos", "pics"]);
  });

  const aliasErrors: [string, string][] = [
    ["taken", "error: Bucket already exists: taken (BucketAlreadyExists)\n"],
    ["Bad_Name", "error: Invalid bucket name: Bad_Name (InvalidBucketName)\n"],
  ];
  for (const [name, message] of aliasErrors) {
    test(`alias to ${name}: the API error is one line, exit 1`, async () => {
      const r = await run("bucket", "alias", "photos", name);
      expect(r.code).toBe(EXIT_FAILURE);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
    });
  }

  test("alias of an unknown bucket sends no AddBucketAlias", async () => {
    const r = await run("bucket", "alias", "nope", "pics");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Bucket not found (NoSuchBucket)\n");
    expect(requests.map((q) => q.endpoint)).toEqual(["GetBucketInfo"]);
  });

  test("unalias finds the bucket by that name, removes it and prints the bucket", async () => {
    const r = await run("bucket", "unalias", "pics");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetBucketInfo", { globalAlias: "pics" }],
      ["POST", "RemoveBucketAlias", {}],
    ]);
    expect(requests[1]!.body).toEqual({ bucketId: BUCKET_ID, globalAlias: "pics" });
    expect(r.stdout).toMatch(/Global aliases:\s+photos\n/);
  });

  test("unalias --json prints the bucket", async () => {
    const r = await run("bucket", "unalias", "pics", "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(JSON.parse(r.stdout).globalAliases).toEqual(["photos"]);
  });

  test("unalias of a bucket's only name: the API error is one line, exit 1", async () => {
    const r = await run("bucket", "unalias", "photos");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Bucket photos has no other global alias; it would have none left (InvalidRequest)\n");
    expect(r.stdout).toBe("");
  });

  test("unalias takes a name only: an unknown one is not retried as an id prefix", async () => {
    const r = await run("bucket", "unalias", "e6a14cd6a27f4868");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Bucket not found (NoSuchBucket)\n");
    expect(requests.map((q) => [q.endpoint, q.query])).toEqual([["GetBucketInfo", { globalAlias: "e6a14cd6a27f4868" }]]);
  });

  const refused: [string[], string][] = [
    [["bucket", "alias", "photos"], "error: missing NEW_NAME (see 'bunker bucket alias --help')\n"],
    [["bucket", "alias"], "error: missing BUCKET (see 'bunker bucket alias --help')\n"],
    [["bucket", "alias", "photos", "pics", "more"], "error: unexpected argument 'more' (see 'bunker bucket alias --help')\n"],
    [["bucket", "unalias"], "error: missing NAME (see 'bunker bucket unalias --help')\n"],
    [["bucket", "unalias", "pics", "photos"], "error: unexpected argument 'photos' (see 'bunker bucket unalias --help')\n"],
  ];
  for (const [args, message] of refused) {
    test(`bunker ${args.join(" ")} is a usage error before any request`, async () => {
      const r = await run(...args);
      expect(r.code).toBe(EXIT_USAGE);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
      expect(requests).toEqual([]);
    });
  }

  test("help shows the arguments", async () => {
    let r = await cli(["bucket", "alias", "--help"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("Usage: bunker bucket alias BUCKET NEW_NAME [options]");
    r = await cli(["help", "bucket", "unalias"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("Usage: bunker bucket unalias NAME [options]");
  });
});

describe("bucket cleanup-incomplete-uploads", () => {
  const VIDEOS_ID = "7c".repeat(32);
  /** A bucket with no global alias, reachable by id only. */
  const UNNAMED_ID = "0123456789abcdef".repeat(4);
  const DELETED: Record<string, number> = { [BUCKET_ID]: 3, [VIDEOS_ID]: 0, [UNNAMED_ID]: 1 };

  const cleanupRoutes: Record<string, Handler> = {
    GetBucketInfo: (q) => {
      if (q.globalAlias === "videos" || q.id === VIDEOS_ID) return json({ ...bucketInfo(), id: VIDEOS_ID, globalAliases: ["videos"] });
      if (q.id === UNNAMED_ID) return json({ ...bucketInfo(), id: UNNAMED_ID, globalAliases: [] });
      return ROUTES_DEFAULT.GetBucketInfo!(q, undefined);
    },
    CleanupIncompleteUploads: (_q, body) => json({ uploadsDeleted: DELETED[body.bucketId] ?? 0 }),
  };
  const run = (...args: string[]) => withRoutes(cleanupRoutes, () => withConfig("bucket", "cleanup-incomplete-uploads", ...args));

  test("by default aborts uploads older than a day (Garage's 1d)", async () => {
    const r = await run("photos");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => [q.method, q.endpoint, q.query])).toEqual([
      ["GET", "GetBucketInfo", { globalAlias: "photos" }],
      ["POST", "CleanupIncompleteUploads", {}],
    ]);
    expect(requests[1]!.body).toEqual({ bucketId: BUCKET_ID, olderThanSecs: 86_400 });
    expect(r.stdout).toBe("photos: 3 incomplete uploads aborted\n");
  });

  const durations: [string, number][] = [
    ["30m", 1800],
    ["12h", 43_200],
    ["1d", 86_400],
    ["2w", 1_209_600],
    ["90s", 90],
    ["3600", 3600],
    ["0", 0],
    ["0s", 0],
  ];
  for (const [text, secs] of durations) {
    test(`--older-than ${text} sends ${secs} seconds`, async () => {
      const r = await run("--older-than", text, "photos");
      expect(r.code).toBe(EXIT_OK);
      expect(fakeBody("CleanupIncompleteUploads")).toEqual({ bucketId: BUCKET_ID, olderThanSecs: secs });
    });
  }

  test("--older-than=VALUE after the bucket", async () => {
    const r = await run("photos", "--older-than=45m");
    expect(r.code).toBe(EXIT_OK);
    expect(fakeBody("CleanupIncompleteUploads")).toEqual({ bucketId: BUCKET_ID, olderThanSecs: 2700 });
  });

  test("several buckets: all resolved first, then one cleanup and one line each", async () => {
    const r = await run("photos", "videos", UNNAMED_ID, "--older-than", "1h");
    expect(r.code).toBe(EXIT_OK);
    expect(requests.map((q) => q.endpoint)).toEqual([
      "GetBucketInfo",
      "GetBucketInfo",
      "GetBucketInfo",
      "CleanupIncompleteUploads",
      "CleanupIncompleteUploads",
      "CleanupIncompleteUploads",
    ]);
    expect(requests.slice(3).map((q) => q.body)).toEqual([
      { bucketId: BUCKET_ID, olderThanSecs: 3600 },
      { bucketId: VIDEOS_ID, olderThanSecs: 3600 },
      { bucketId: UNNAMED_ID, olderThanSecs: 3600 },
    ]);
    expect(r.stdout).toBe(
      ["photos: 3 incomplete uploads aborted", "videos: 0 incomplete uploads aborted", "0123456789abcdef: 1 incomplete uploads aborted", ""].join(
        "\n",
      ),
    );
  });

  test("--json prints one entry per bucket, name null without a global alias", async () => {
    const r = await run("photos", UNNAMED_ID, "--json");
    expect(r.code).toBe(EXIT_OK);
    expect(JSON.parse(r.stdout)).toEqual([
      { bucket: BUCKET_ID, name: "photos", uploadsDeleted: 3 },
      { bucket: UNNAMED_ID, name: null, uploadsDeleted: 1 },
    ]);
  });

  test("a bucket named twice (by name and by id) is cleaned once", async () => {
    const r = await run("photos", BUCKET_ID);
    expect(r.code).toBe(EXIT_OK);
    expect(requests.filter((q) => q.endpoint === "CleanupIncompleteUploads")).toHaveLength(1);
    expect(r.stdout).toBe("photos: 3 incomplete uploads aborted\n");
  });

  test("an unknown bucket among several fails before any cleanup", async () => {
    const r = await run("photos", "nope", "videos");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Bucket not found (NoSuchBucket)\n");
    expect(r.stdout).toBe("");
    expect(requests.map((q) => q.endpoint)).toEqual(["GetBucketInfo", "GetBucketInfo"]);
  });

  test("an API error on cleanup is one line, exit 1", async () => {
    const r = await withRoutes(
      { CleanupIncompleteUploads: () => apiError(400, "InvalidRequest", "olderThanSecs must be\nan integer") },
      () => withConfig("bucket", "cleanup-incomplete-uploads", "photos"),
    );
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: olderThanSecs must be an integer (InvalidRequest)\n");
  });

  const examples = "(e.g. 30m, 12h, 1d, 2w or a number of seconds)";
  const refused: [string[], string][] = [
    [["--older-than", "1y", "photos"], `error: --older-than: cannot read duration '1y' ${examples}\n`],
    [["--older-than", "1.5h", "photos"], `error: --older-than: cannot read duration '1.5h' ${examples}\n`],
    [["--older-than", "1d12h", "photos"], `error: --older-than: cannot read duration '1d12h' ${examples}\n`],
    [["--older-than", "h", "photos"], `error: --older-than: cannot read duration 'h' ${examples}\n`],
    [["--older-than", "soon", "photos"], `error: --older-than: cannot read duration 'soon' ${examples}\n`],
    [["--older-than", "", "photos"], `error: --older-than: cannot read duration '' ${examples}\n`],
    [["--older-than", "-5m", "photos"], "error: --older-than cannot be negative\n"],
    [["--older-than", "99999999999999w", "photos"], "error: --older-than: '99999999999999w' is too large\n"],
    // Checked before the buckets are looked up: an unknown one changes nothing here.
    [["--older-than", "1x", "photos", "nope"], `error: --older-than: cannot read duration '1x' ${examples}\n`],
    [[], "error: missing BUCKET (see 'bunker bucket cleanup-incomplete-uploads --help')\n"],
    [["--older-than", "1d"], "error: missing BUCKET (see 'bunker bucket cleanup-incomplete-uploads --help')\n"],
    [["--older-than"], "error: flag --older-than needs a value (DURATION) (see 'bunker bucket cleanup-incomplete-uploads --help')\n"],
  ];
  for (const [args, message] of refused) {
    test(`bunker bucket cleanup-incomplete-uploads ${args.join(" ")} is a usage error before any request`, async () => {
      const r = await run(...args);
      expect(r.code).toBe(EXIT_USAGE);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
      expect(requests).toEqual([]);
    });
  }

  test("help shows the variadic argument and the default", async () => {
    const r = await cli(["bucket", "cleanup-incomplete-uploads", "--help"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("Usage: bunker bucket cleanup-incomplete-uploads BUCKET... [options]");
    expect(r.stdout).toMatch(/--older-than DURATION\s+abort multipart uploads .*\(default: 1d\)/);
  });

  test("bucket --help lists the new commands", async () => {
    const r = await cli(["bucket", "--help"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toMatch(/bunker bucket alias BUCKET NEW_NAME \[options\]\s+give a bucket another global alias/);
    expect(r.stdout).toMatch(/bunker bucket unalias NAME \[options\]\s+remove a global alias/);
    expect(r.stdout).toMatch(/bunker bucket cleanup-incomplete-uploads BUCKET\.\.\. \[options\]\s+abort/);
    const top = await cli(["--help"]);
    expect(top.stdout).toMatch(/set-quotas, alias, unalias, cleanup-incomplete-uploads, inspect-object\)/);
  });
});

describe("status", () => {
  test("human output lists healthy and failed nodes", async () => {
    const r = await withConfig("status");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toMatch(/Cluster health:\s+degraded/);
    expect(r.stdout).toContain("==== HEALTHY NODES ====");
    expect(r.stdout).toMatch(/ID\s+Hostname\s+Address\s+Tags\s+Zone\s+Capacity\s+DataAvail\s+Version\n/);
    expect(r.stdout).toMatch(/aaaaaaaaaaaaaaaa \(this node\)\s+node1\s+127.0.0.1:3901\s+ssd\s+dc1\s+1.0 GiB\s+512.0 MiB \(50.0%\)\s+0.1.0\+abc123\n/);
    expect(r.stdout).toContain("==== FAILED NODES ====");
    expect(r.stdout).toMatch(/bbbbbbbbbbbbbbbb\s+node2\s+10.0.0.2:3901\s+dc2\s+gateway\s+42s ago/);
  });

  test("--json prints both API results", async () => {
    const r = await withConfig("status", "--json");
    expect(JSON.parse(r.stdout)).toEqual({ status: clusterStatus, health: clusterHealth });
  });
});

describe("usage errors exit 2 with one line", () => {
  const cases: [string[], string][] = [
    [[], "error: missing command (see 'bunker --help')\n"],
    [["frobnicate"], "error: unknown command 'frobnicate' (see 'bunker --help')\n"],
    [["--bogus", "key", "list"], "error: unknown flag --bogus (see 'bunker --help')\n"],
    [["key"], "error: missing command: bunker key <create|list|info|import|delete|allow|deny>\n"],
    [["key", "rename"], "error: unknown command 'key rename' (see 'bunker key --help')\n"],
    [["key", "list", "--bogus"], "error: unknown flag --bogus (see 'bunker key list --help')\n"],
    [["key", "info"], "error: missing KEY (see 'bunker key info --help')\n"],
    [["key", "create", "a", "b"], "error: unexpected argument 'b' (see 'bunker key create --help')\n"],
    [["key", "import", "id"], "error: missing SECRET (see 'bunker key import --help')\n"],
    [["key", "import", "id", "s", "-n"], "error: flag --name needs a value (NAME) (see 'bunker key import --help')\n"],
    [["key", "list", "-c", "x.toml"], "error: -c is a global option: put it before the command (bunker -c FILE key list)\n"],
    [["help", "key", "nope"], "error: no help for unknown command 'key nope' (see 'bunker --help')\n"],
  ];
  for (const [args, message] of cases) {
    test(`bunker ${args.join(" ")}`, async () => {
      const r = await withConfig(...args);
      expect(r.code).toBe(EXIT_USAGE);
      expect(r.stderr).toBe(message);
      expect(r.stdout).toBe("");
      expect(requests).toEqual([]);
    });
  }
});

describe("help", () => {
  test("top-level, group and command help go to stdout with exit 0", async () => {
    for (const args of [["--help"], ["help"], ["-h"]]) {
      const r = await cli(args);
      expect(r.code).toBe(EXIT_OK);
      expect(r.stdout).toContain("Usage: bunker [-c FILE] <command> [options]");
    }
    for (const args of [["key", "--help"], ["help", "key"], ["--help", "key"]]) {
      const r = await cli(args);
      expect(r.stdout).toContain("Usage: bunker key <command> [options]");
      expect(r.stdout).toContain("bunker key import ID SECRET [options]");
    }
    for (const args of [["bucket", "allow", "--help"], ["help", "bucket", "allow"], ["bucket", "--help", "allow"]]) {
      const r = await cli(args);
      expect(r.code).toBe(EXIT_OK);
      expect(r.stdout).toContain("Usage: bunker bucket allow BUCKET [options]");
      expect(r.stdout).toMatch(/--key KEY\s+the access key/);
      expect(r.stdout).toMatch(/--json\s+print the raw JSON result/);
    }
    expect((await cli(["server", "--help"])).stdout).toContain("Usage: bunker [-c FILE] server");
    expect((await cli(["help", "status"])).stdout).toContain("Usage: bunker status [options]");
  });

  test("--help wins over missing arguments and needs no config", async () => {
    const r = await cli(["-c", join(dir, "missing.toml"), "key", "delete", "--help"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain("--yes");
  });
});

describe("version", () => {
  test("--version, -V and `version` print the package version and the build, read no config, call no node", async () => {
    for (const args of [["--version"], ["-V"], ["version"], ["-c", join(dir, "missing.toml"), "--version"], ["-c", join(dir, "missing.toml"), "version"]]) {
      const r = await cli(args);
      expect(r.code).toBe(EXIT_OK);
      // Run from source: no build was stamped in.
      expect(r.stdout).toBe(`bunker ${pkg.version} (build dev)\n`);
      expect(r.stderr).toBe("");
    }
    expect(requests).toEqual([]);
  });

  test("`version` takes no argument; its help says where a node's version is", async () => {
    const r = await cli(["version", "now"]);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toBe("error: unexpected argument 'now' (see 'bunker version --help')\n");
    expect((await cli(["version", "--help"])).stdout).toContain("garageVersion");
    expect((await cli(["--help"])).stdout).toMatch(/version\s+print the version and build of this bunker/);
    expect((await cli(["--help"])).stdout).toMatch(/-V, --version\s+print the version and build/);
  });
});

describe("connection and configuration", () => {
  test("without [admin] api_bind_addr the CLI talks to the loopback default the server listens on", () => {
    const path = join(dir, "noadmin.toml");
    writeFileSync(path, `metadata_dir = "${join(dir, "meta")}"\ndata_dir = "${join(dir, "data")}"\n`);
    expect(adminUrlFromConfig(loadConfig(path, () => {}))).toBe("http://127.0.0.1:3903");
    expect(adminUrlFromConfig(loadConfig(undefined, () => {}))).toBe("http://127.0.0.1:3903");
  });

  test("a config mistake is one line naming the key, exit 1, before any request", async () => {
    const path = join(dir, "typo.toml");
    writeFileSync(path, `metadata_dir = "${join(dir, "meta")}"\ndata_dir = "${join(dir, "data")}"\n[admin]\napi_bind_adr = "127.0.0.1:${server.port}"\n`);
    const r = await cli(["-c", path, "key", "list"]);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: config: admin.api_bind_adr: unknown key (did you mean api_bind_addr?)\n");
    expect(requests).toEqual([]);
  });

  test("a Garage-only key is a warning on stderr; the command still runs", async () => {
    const path = join(dir, "garage.toml");
    writeFileSync(
      path,
      `metadata_dir = "${join(dir, "meta")}"\ndata_dir = "${join(dir, "data")}"\ndb_engine = "lmdb"\n[admin]\napi_bind_addr = "127.0.0.1:${server.port}"\nadmin_token = "${TOKEN}"\n`,
    );
    const r = await cli(["-c", path, "key", "list"]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stderr).toBe("warning: config: db_engine: Garage setting not used by Bunker, ignored (metadata is always in SQLite)\n");
  });

  test("an unreachable node gives the one-line hint, exit 1", async () => {
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const port = probe.port;
    probe.stop(true);
    const config = writeConfig("down.toml", `0.0.0.0:${port}`, TOKEN);
    const r = await cli(["-c", config, "key", "list"]);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe(
      `error: cannot reach the admin API at http://127.0.0.1:${port}: connection refused — is the server running?\n`,
    );
  });

  test("a missing config file is one line, exit 1", async () => {
    const r = await cli(["-c", join(dir, "missing.toml"), "key", "list"]);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe(`error: config: file not found: ${join(dir, "missing.toml")}\n`);
  });

  test("BUNKER_CONFIG is used when -c is absent", async () => {
    const r = await cli(["key", "list", "--json"], { BUNKER_CONFIG: configPath });
    expect(r.code).toBe(EXIT_OK);
    expect(requests.length).toBe(1);
  });

  test("token from BUNKER_ADMIN_TOKEN, then from the credentials file", async () => {
    const config = writeConfig("notoken.toml", `127.0.0.1:${server.port}`);
    let r = await cli(["-c", config, "key", "list"], { BUNKER_ADMIN_TOKEN: TOKEN });
    expect(r.code).toBe(EXIT_OK);
    expect(requests[0]!.auth).toBe(`Bearer ${TOKEN}`);

    // The server keeps first-start credentials next to metadata_dir.
    writeFileSync(join(dir, "credentials"), JSON.stringify({ adminToken: TOKEN, accessKeyId: KEY_ID, secretAccessKey: SECRET }));
    try {
      r = await cli(["-c", config, "key", "list"]);
      expect(r.code).toBe(EXIT_OK);
      expect(requests[1]!.auth).toBe(`Bearer ${TOKEN}`);
    } finally {
      rmSync(join(dir, "credentials"));
    }
  });

  test("no token at all: the 403 says where a token comes from", async () => {
    const config = writeConfig("notoken2.toml", `127.0.0.1:${server.port}`);
    const r = await cli(["-c", config, "key", "list"]);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(requests[0]!.auth).toBeNull();
    expect(r.stderr).toBe(
      "error: bad token (no admin token: set admin.admin_token in the config or BUNKER_ADMIN_TOKEN) (Forbidden)\n",
    );
  });

  test("a non-JSON error body is reduced to one line", async () => {
    override = new Response("<html>\n<body>Bad Gateway</body>\n</html>", { status: 502 });
    const r = await withConfig("bucket", "list");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: <html> <body>Bad Gateway</body> </html> (HTTP502)\n");
  });

  test("an IPv6 bind address is bracketed", async () => {
    const config = writeConfig("v6.toml", `[::1]:1`, TOKEN);
    const r = await cli(["-c", config, "key", "list"]);
    expect(r.stderr).toStartWith("error: cannot reach the admin API at http://[::1]:1: ");
  });
});
