// Serves an Elysia app through node:http instead of Bun.serve, for two measured reasons
// (docs/stack-facts.md#streamed-responses, #raw-url): Bun.serve sends every streamed response chunked even
// when Content-Length is set (S3 clients such as s3cmd need the length on GetObject), and it
// normalises the request path ("." / ".." segments, "\") which breaks SigV4. node:http keeps
// both; the raw request target is handed to handlers through rawUrlOf().
import http from "node:http";
import { once } from "node:events";
import type { Elysia } from "elysia";
import { logger } from "../util/log";
import { chunkDone } from "../util/buffer-pool";

const log = logger("http");

/** Time allowed to receive request headers. Bodies may stream for as long as they move. */
const HEADERS_TIMEOUT_MS = 60_000;
/** An idle keep-alive connection is closed after this. */
const KEEP_ALIVE_TIMEOUT_MS = 30_000;

const rawUrls = new WeakMap<Request, string>();

/** The client closed the connection before sending its whole request body. */
export class ClientDisconnected extends Error {
  constructor() {
    super("the client closed the connection before the end of the request body");
  }
}

/** The request target exactly as the client sent it (path and query, undecoded). */
export function rawUrlOf(request: Request): string {
  const raw = rawUrls.get(request);
  if (raw !== undefined) return raw;
  const u = new URL(request.url);
  return u.pathname + u.search;
}

function bodyStream(req: http.IncomingMessage): ReadableStream<Uint8Array> {
  const it = req[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let step: IteratorResult<Uint8Array | Buffer>;
        try {
          step = await it.next();
        } catch {
          controller.error(new ClientDisconnected());
          return;
        }
        if (step.done) controller.close();
        else controller.enqueue(step.value instanceof Uint8Array ? step.value : new Uint8Array(step.value));
      },
      cancel() {
        req.resume();
      },
    },
    { highWaterMark: 0 },
  );
}

function toRequest(req: http.IncomingMessage): Request {
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  // Elysia routes on a normalised URL with a long host (its short-Host bug); handlers that
  // need the exact target read rawUrlOf().
  const target = req.url ?? "/";
  let url: string;
  try {
    url = new URL(target, "http://localhost").href;
  } catch {
    url = "http://localhost/";
  }
  const request = new Request(url, {
    method,
    headers,
    body: hasBody ? bodyStream(req) : undefined,
    duplex: "half",
  } as RequestInit);
  rawUrls.set(request, target);
  return request;
}

/** Resolves when the socket wants more data or is gone; leaves no listener behind. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

async function sendResponse(res: http.ServerResponse, response: Response, isHead: boolean): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  res.writeHead(response.status, headers);
  if (!response.body || isHead) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  let closed = false;
  res.once("close", () => {
    closed = true;
    if (!res.writableFinished) void reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || closed) break;
      // Lent block buffers (util/buffer-pool) go back to their pool once written out.
      if (!res.write(value, () => chunkDone(value))) await drained(res);
    }
  } catch (err) {
    // The body failed mid-stream: the status line is gone, so cut the connection to make
    // the client see a truncated response rather than a silently short one.
    log.warn(`response stream failed: ${(err as Error).message}`);
    res.destroy();
    return;
  }
  res.end();
}

export interface ServeOptions {
  host: string;
  port: number;
}

export async function serveNode(app: Elysia<any, any, any, any, any, any, any>, opts: ServeOptions): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    try {
      const response = await app.handle(toRequest(req));
      await sendResponse(res, response, req.method === "HEAD");
    } catch (err) {
      log.error(`unhandled: ${(err as Error).stack ?? err}`);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  });
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = 0;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.listen(opts.port, opts.host === "::" ? undefined : opts.host);
  await once(server, "listening");
  return server;
}

/**
 * The bucket a Host header (or a domain) names: without its port and trailing dot, the label(s)
 * before `.<rootDomain>`; otherwise the whole name when `wholeHostIsBucket` (the web endpoint,
 * where a bucket called "example.com" serves example.com), else none. One function for the S3
 * endpoint, the web endpoint and the admin /check, so that they always agree.
 */
export function bucketOfHost(host: string | null, rootDomain: string | undefined, wholeHostIsBucket: boolean): string | undefined {
  if (!host) return undefined;
  let name = host.toLowerCase();
  if (name.startsWith("[")) return undefined; // an IPv6 literal names no bucket
  name = name.replace(/:\d+$/, "").replace(/\.$/, "");
  const root = rootDomain?.toLowerCase().replace(/^\./, "");
  if (root && name.endsWith("." + root)) name = name.slice(0, -(root.length + 1));
  else if (!wholeHostIsBucket) return undefined;
  return name === "" ? undefined : name;
}
