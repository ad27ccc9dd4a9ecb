// Bare servers that give the HTTP ceilings, run in their own process:
//   bun benchmarks/ceiling-server.ts <bun|node> <port> <dir>
// PUT /<name>     streams the body through MD5 into <dir>/<name> (Bun file writer, no fsync:
//                 Bunker's default is data_fsync = false) and answers the ETag.
// GET /<name>     streams <dir>/<name>: Bun.serve returns Bun.file (sendfile); node:http
//                 reads 1 MiB chunks and writes them with backpressure, as Bunker does
//                 (a file of at most 1 MiB in one read).
// HEAD /<name>    stat; DELETE /<name> unlink. No auth, no metadata: the pure transport + hash + disk cost.
// Prints "ready" when listening.
import http from "node:http";
import { once } from "node:events";
import { createReadStream, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { CryptoHasher } from "bun";

const [mode, portArg, dir] = process.argv.slice(2);
if ((mode !== "bun" && mode !== "node") || !portArg || !dir) {
  console.error("usage: ceiling-server.ts <bun|node> <port> <dir>");
  process.exit(2);
}
const port = Number(portArg);
const CHUNK = 1 << 20;

function fileOf(pathname: string): string {
  const name = pathname.slice(1).replace(/[^A-Za-z0-9._-]/g, "_");
  return join(dir!, name || "_");
}

async function putBody(path: string, chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const md5 = new CryptoHasher("md5");
  const sink = Bun.file(path).writer({ highWaterMark: CHUNK });
  for await (const chunk of chunks) {
    md5.update(chunk);
    sink.write(chunk);
  }
  await sink.end();
  return `"${md5.digest("hex")}"`;
}

if (mode === "bun") {
  Bun.serve({
    port,
    hostname: "127.0.0.1",
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    idleTimeout: 120,
    async fetch(req) {
      const path = fileOf(new URL(req.url).pathname);
      switch (req.method) {
        case "PUT":
          return new Response(null, { headers: { etag: await putBody(path, (req.body ?? []) as AsyncIterable<Uint8Array>) } });
        case "GET":
        case "HEAD": {
          const f = Bun.file(path);
          if (!(await f.exists())) return new Response(null, { status: 404 });
          return new Response(f, { headers: { "content-type": "application/octet-stream" } });
        }
        case "DELETE":
          try {
            unlinkSync(path);
          } catch {}
          return new Response(null, { status: 204 });
      }
      return new Response(null, { status: 405 });
    },
  });
} else {
  const server = http.createServer(async (req, res) => {
    const path = fileOf(new URL(req.url ?? "/", "http://x").pathname);
    try {
      switch (req.method) {
        case "PUT":
          res.writeHead(200, { etag: await putBody(path, req) }).end();
          return;
        case "GET":
        case "HEAD": {
          let size: number;
          try {
            size = statSync(path).size;
          } catch {
            res.writeHead(404).end();
            return;
          }
          res.writeHead(200, { "content-length": String(size), "content-type": "application/octet-stream" });
          if (req.method === "HEAD") {
            res.end();
            return;
          }
          if (size <= CHUNK) {
            res.end(await Bun.file(path).bytes()); // small files: one read, one write
            return;
          }
          for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
            if (!res.write(chunk)) await Promise.race([once(res, "drain"), once(res, "close")]);
            if (res.destroyed) return;
          }
          res.end();
          return;
        }
        case "DELETE":
          try {
            unlinkSync(path);
          } catch {}
          res.writeHead(204).end();
          return;
      }
      res.writeHead(405).end();
    } catch (err) {
      console.error(err);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 30_000;
  server.requestTimeout = 0;
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
}
process.stdout.write("ready\n");
