// The S3 floor for small requests, run in its own process:
//   bun benchmarks/floor-server.ts <port> <dir> <access key id> <secret key> <region>
// The least any S3 server on Bunker's stack must do for a 4 KiB PUT, GET, HEAD or DELETE, and
// nothing more: node:http, a SigV4 header check (signing key cached per day), one bun:sqlite
// row per object with Bunker's pragmas (WAL, synchronous NORMAL, 2 MiB page cache, no memory
// map) holding the body inline as Bunker stores small objects, and the headers S3 answers
// with. A DELETE writes a tombstone row (a replicated store keeps one) in one transaction
// with the read of the row it replaces.
//
// It is a yardstick, not a server: one bucket, no permissions, no placement, no metadata
// beyond size and ETag, bodies of at most INLINE_MAX bytes; it verifies the signatures of
// benchmarks/lib/client.ts (canonical path and query as that client sends them) and refuses
// what it cannot check. Bunker / floor says what Bunker's own layers cost; floor / ceiling
// what S3 itself costs over bare HTTP (benchmarks/footprint/cpu.ts prints both).
// Prints "ready" when listening.
import http from "node:http";
import { once } from "node:events";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { CryptoHasher } from "bun";
import { createHmac, timingSafeEqual } from "node:crypto";

const [portArg, dir, accessKeyId, secret, region] = process.argv.slice(2);
if (!portArg || !dir || !accessKeyId || !secret || !region) {
  console.error("usage: floor-server.ts <port> <dir> <access key id> <secret key> <region>");
  process.exit(2);
}

/** Largest body kept: Bunker's inline threshold (src/util/limits.ts INLINE_THRESHOLD). */
const INLINE_MAX = 8192;
/** Bytes before the body in a row: size (4), timestamp (8), MD5 (16), a tombstone flag (1). */
const ROW_HEADER = 29;
/** Largest clock skew accepted, as Bunker and AWS (15 minutes). */
const MAX_SKEW_MS = 15 * 60 * 1000;

const db = new Database(join(dir, "floor.sqlite"));
db.exec("PRAGMA journal_mode = WAL");
db.exec("PRAGMA synchronous = NORMAL");
db.exec("PRAGMA cache_size = -2048");
db.exec("PRAGMA mmap_size = 0");
db.exec("CREATE TABLE IF NOT EXISTS t_object (id INTEGER PRIMARY KEY, pk NOT NULL, sk TEXT NOT NULL, part INTEGER NOT NULL, unsettled INTEGER, v BLOB NOT NULL)");
db.exec("CREATE UNIQUE INDEX IF NOT EXISTS t_object_key ON t_object (pk, sk)");
const getStmt = db.query("SELECT id, v FROM t_object WHERE pk = ? AND sk = ?");
const putStmt = db.query("INSERT INTO t_object (pk, sk, part, v) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (pk, sk) DO UPDATE SET v = ?4");
/** The one bucket's id, as Bunker stores a partition key of 64 hex digits: 32 bytes. */
const BUCKET = new Uint8Array(32).fill(7);
const deleteTx = db.transaction((key: string, now: number) => {
  getStmt.get(BUCKET, key);
  const tomb = new Uint8Array(ROW_HEADER);
  new DataView(tomb.buffer).setFloat64(4, now);
  tomb[ROW_HEADER - 1] = 1;
  putStmt.run(BUCKET, key, 0, tomb);
});

let signingKey: { scope: string; key: Buffer } | undefined;

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

const AUTH_RE = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

/** The header values a SigV4 check reads, by lower-case name, from node's raw list. */
function headerMap(raw: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < raw.length; i += 2) m.set(raw[i]!.toLowerCase(), raw[i + 1]!.trim());
  return m;
}

/** Whether the request carries a valid SigV4 header signature of our key. */
function authenticated(method: string, target: string, headers: Map<string, string>): boolean {
  const m = AUTH_RE.exec(headers.get("authorization") ?? "");
  if (!m || m[1] !== accessKeyId || m[3] !== region) return false;
  const day = m[2]!;
  const signed = m[4]!;
  const amzDate = headers.get("x-amz-date") ?? "";
  const payload = headers.get("x-amz-content-sha256");
  if (!amzDate.startsWith(day) || payload === undefined) return false;
  const at = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
  if (!(Math.abs(Date.now() - at) <= MAX_SKEW_MS)) return false;
  const scope = `${day}/${region}/s3/aws4_request`;
  if (signingKey?.scope !== scope) signingKey = { scope, key: hmac(hmac(hmac(hmac("AWS4" + secret, day), region!), "s3"), "aws4_request") };
  const q = target.indexOf("?");
  let canonical = `${method}\n${q < 0 ? target : target.slice(0, q)}\n${q < 0 ? "" : target.slice(q + 1)}\n`;
  for (const name of signed.split(";")) {
    const value = headers.get(name);
    if (value === undefined) return false;
    canonical += `${name}:${value}\n`;
  }
  canonical += `\n${signed}\n${payload}`;
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${new CryptoHasher("sha256").update(canonical).digest("hex")}`;
  return timingSafeEqual(createHmac("sha256", signingKey.key).update(toSign).digest(), Buffer.from(m[5]!, "hex"));
}

let requestSeq = 0;

async function readBody(req: http.IncomingMessage): Promise<Uint8Array | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > INLINE_MAX) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, n);
}

const server = http.createServer(async (req, res) => {
  const requestId = (++requestSeq).toString(16).toUpperCase().padStart(16, "0");
  const target = req.url ?? "/";
  if (!authenticated(req.method ?? "", target, headerMap(req.rawHeaders))) {
    res.writeHead(403, { "x-amz-request-id": requestId, connection: "close" }).end();
    return;
  }
  const path = target.split("?")[0]!;
  const slash = path.indexOf("/", 1);
  if (slash < 0) {
    // The bucket itself: CreateBucket of the one bucket there is.
    res.writeHead(req.method === "PUT" ? 200 : 405, { "x-amz-request-id": requestId }).end();
    return;
  }
  const key = decodeURIComponent(path.slice(slash + 1));
  switch (req.method) {
    case "PUT": {
      const body = await readBody(req);
      if (body === undefined) {
        res.writeHead(413, { "x-amz-request-id": requestId, connection: "close" }).end();
        return;
      }
      const row = new Uint8Array(ROW_HEADER + body.length);
      const view = new DataView(row.buffer);
      view.setUint32(0, body.length);
      view.setFloat64(4, Date.now());
      const md5 = new CryptoHasher("md5").update(body).digest() as Buffer;
      row.set(md5, 12);
      row.set(body, ROW_HEADER);
      putStmt.run(BUCKET, key, 0, row);
      res.writeHead(200, { etag: `"${md5.toString("hex")}"`, "x-amz-request-id": requestId }).end();
      return;
    }
    case "GET":
    case "HEAD": {
      const row = getStmt.get(BUCKET, key) as { v: Uint8Array } | null;
      if (row === null || row.v[ROW_HEADER - 1] === 1) {
        res.writeHead(404, { "x-amz-request-id": requestId }).end();
        return;
      }
      const view = new DataView(row.v.buffer, row.v.byteOffset, row.v.byteLength);
      const size = view.getUint32(0);
      res.writeHead(200, {
        "accept-ranges": "bytes",
        "content-length": String(size),
        "content-type": "binary/octet-stream",
        etag: `"${Buffer.from(row.v.buffer, row.v.byteOffset + 12, 16).toString("hex")}"`,
        "last-modified": new Date(view.getFloat64(4)).toUTCString(),
        "x-amz-request-id": requestId,
      });
      if (req.method === "HEAD") res.end();
      else res.end(row.v.subarray(ROW_HEADER));
      return;
    }
    case "DELETE":
      deleteTx(key, Date.now());
      res.writeHead(204, { "x-amz-request-id": requestId }).end();
      return;
  }
  res.writeHead(405, { "x-amz-request-id": requestId }).end();
});
server.keepAliveTimeout = 30_000;
server.requestTimeout = 0;
server.listen(Number(portArg), "127.0.0.1");
await once(server, "listening");
process.stdout.write("ready\n");
