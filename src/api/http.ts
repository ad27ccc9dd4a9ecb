// Serves an Elysia app through node:http instead of Bun.serve, for two measured reasons
// (docs/stack-facts.md#streamed-responses, #raw-url): Bun.serve sends every streamed response chunked even
// when Content-Length is set (S3 clients such as s3cmd need the length on GetObject), and it
// normalises the request path ("." / ".." segments, "\") which breaks SigV4. node:http keeps
// both; the raw request target is handed to handlers through rawUrlOf().
//
// It also owns the limits every HTTP endpoint shares at its edge: the idle timeout of request
// bodies, the send timeout of responses, the bound on open connections, the rule that a
// request body left unread is never drained (the connection is closed instead), and that a
// response whose body fails never looks complete to the client.
import http from "node:http";
import type { Socket } from "node:net";
import { readFileSync } from "node:fs";
import { once } from "node:events";
import { logger } from "../util/log";
import { chunkDone } from "../util/buffer-pool";
import { parseDecimal } from "../util/decimal";
import { RateLimitedLog, suppressedNote } from "../util/rate-limited-log";
import { envMilliseconds } from "../util/env";

const log = logger("http");

/**
 * Time allowed to receive request headers; S3 clients send theirs at once. Bun's node:http
 * ignores this setting: it cuts a connection whose request headers are not complete within
 * about 10 s itself (measured on Bun 1.4, however slowly the bytes trickle in). Under Node
 * this value applies.
 */
const HEADERS_TIMEOUT_MS = 10_000;
/** An idle keep-alive connection is closed after this. */
const KEEP_ALIVE_TIMEOUT_MS = 30_000;
/**
 * Longest silence of a request body while a handler waits for its next bytes (AWS S3 answers
 * RequestTimeout after about 20 s). Time spent while we do not read (our own backpressure)
 * does not count. Overridable with the BUNKER_BODY_IDLE_TIMEOUT_MS environment variable, for
 * tests that cannot wait that long.
 */
const BODY_IDLE_TIMEOUT_MS = 20_000;
const BODY_IDLE_TIMEOUT_ENV = "BUNKER_BODY_IDLE_TIMEOUT_MS";
/**
 * Longest time a client may leave a response unread (no room freed in the socket) before the
 * connection is cut, as nginx's send_timeout (same default). Public website objects can be
 * fetched by anyone: without it, clients that never read would each hold a connection and the
 * buffers in flight for ever. A player that pauses a download for longer resumes with a Range.
 */
const SEND_TIMEOUT_MS = 60_000;
/**
 * Share of the process's file descriptors that one HTTP server may hold as connections: the
 * three servers (S3, admin, web) then hold at most 60% of them, leaving the rest to RPC
 * peers, block files and the metadata database, so that a connection flood cannot make a
 * node fail its own disk reads.
 */
const CONNECTION_SHARE_OF_FD_LIMIT = 0.2;
/**
 * Most connections of one server whatever the descriptor limit (Bun raises its soft limit to
 * the hard one, often 2^20): each open request may hold body and block buffers, and a
 * Raspberry Pi has 1 to 8 GiB of memory.
 */
const MAX_CONNECTIONS_CEILING = 512;
/** Fewest connections a server takes, so that a tiny descriptor limit leaves it usable. */
const MIN_CONNECTIONS = 16;
/** The bound when the descriptor limit cannot be read (no /proc, e.g. macOS). */
const DEFAULT_MAX_CONNECTIONS = 256;
/** When connections are refused for the bound, one log line per this interval says so. */
const CONNECTION_LIMIT_LOG_INTERVAL_MS = 60_000;

const rawUrls = new WeakMap<Request, string>();
/** The bytes of responses made by bytesResponse: sent as they are, without reading a stream. */
const wholeBodies = new WeakMap<Response, Uint8Array>();
/** Those of them that are nobody's loan (util/buffer-pool): no one waits for them to be written. */
const unlentBodies = new WeakSet<Response>();

/**
 * A response whose body is `bytes`, all of it already in memory (a small object, an XML
 * document): serveNode writes it out in one call instead of going through a stream reader.
 * `lent: false` says the bytes are no pool's loan (e.g. an inline body read from its row):
 * they then go out with the end of the response, one call less.
 */
export function bytesResponse(bytes: Uint8Array, init: ResponseInit, opts: { lent?: boolean } = {}): Response {
  const response = new Response(bytes, init);
  wholeBodies.set(response, bytes);
  if (opts.lent === false) unlentBodies.add(response);
  return response;
}

/** The client closed the connection before sending its whole request body. */
export class ClientDisconnected extends Error {
  constructor() {
    super("the client closed the connection before the end of the request body");
  }
}

/** The client sent no byte of its request body for the idle timeout while we waited for one. */
export class RequestBodyTimeout extends Error {
  constructor(readonly idleMs: number) {
    super(`no byte of the request body arrived for ${idleMs} ms`);
  }
}

/** The request target exactly as the client sent it (path and query, undecoded). */
export function rawUrlOf(request: Request): string {
  const raw = rawUrls.get(request);
  if (raw !== undefined) return raw;
  const u = new URL(request.url);
  return u.pathname + u.search;
}

/** What is known of a request body's reading, for deciding whether the connection can be reused. */
interface BodyState {
  /** The request announces a body (a Content-Length above 0, or Transfer-Encoding). */
  readonly expected: boolean;
  /** The body was read to its end. */
  ended: boolean;
}

function bodyStream(req: http.IncomingMessage, state: BodyState, idleMs: number): ReadableStream<Uint8Array> {
  const it = req[Symbol.asyncIterator]();
  let cancelled = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const silence = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new RequestBodyTimeout(idleMs)), idleMs);
        });
        let step: IteratorResult<Uint8Array | Buffer>;
        try {
          step = await Promise.race([it.next(), silence]);
        } catch (err) {
          if (cancelled) return;
          controller.error(err instanceof RequestBodyTimeout ? err : new ClientDisconnected());
          return;
        } finally {
          clearTimeout(timer);
        }
        if (cancelled) return; // cancelled while waiting: the stream is closed already
        if (step.done) {
          state.ended = true;
          controller.close();
        } else controller.enqueue(step.value instanceof Uint8Array ? step.value : new Uint8Array(step.value));
      },
      cancel() {
        cancelled = true;
        // The rest is not drained (a refused body may be gigabytes, sent slowly): the response
        // closes the connection instead (sendResponse).
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A request target that URL parsing would leave as it is (path and query of characters it never
 * escapes or rewrites), unless it has a dot segment (DOT_SEGMENT_RE): the common S3 request,
 * made into a URL by concatenation instead of a parse.
 */
const PLAIN_TARGET_RE = /^\/(?!\/)[A-Za-z0-9\-._~!$&()*+,;=:@/%?]*$/;
/** "." or ".." path segments (also percent-encoded) and a "%" not followed by two hex digits. */
const DOT_SEGMENT_RE = /\/(?:\.|%2e)|%(?![0-9A-Fa-f]{2})/i;

/**
 * The request as a Fetch Request, built from the raw header list only (req.headers, node's
 * header object, is never built), and whether it announces a body: a Transfer-Encoding, or a
 * Content-Length other than 0 (node:http refuses a request with several differing ones).
 */
function toRequest(req: http.IncomingMessage, idleMs: number): { request: Request; body: BodyState } {
  const headers = new Headers();
  const raw = req.rawHeaders;
  let expected = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    headers.append(name, value);
    // Names are compared by length first: most headers are neither.
    if (name.length === 17 && name.toLowerCase() === "transfer-encoding") expected = true;
    else if (name.length === 14 && name.toLowerCase() === "content-length" && value.trim() !== "0") expected = true;
  }
  const state: BodyState = { expected, ended: false };
  const method = req.method ?? "GET";
  // A DELETE that announces no body (nearly all) gets none rather than an empty stream, whose
  // reader and iterator cost more than the rest of the Request; no DELETE handler reads one.
  const hasBody = method !== "GET" && method !== "HEAD" && (expected || method !== "DELETE");
  // Elysia routes on a normalised URL with a long host (its short-Host bug); handlers that
  // need the exact target read rawUrlOf().
  const target = req.url ?? "/";
  let url: string;
  if (PLAIN_TARGET_RE.test(target) && !DOT_SEGMENT_RE.test(target)) url = "http://localhost" + target;
  else {
    try {
      url = new URL(target, "http://localhost").href;
    } catch {
      url = "http://localhost/";
    }
  }
  const request = new Request(url, {
    method,
    headers,
    body: hasBody ? bodyStream(req, state, idleMs) : undefined,
    duplex: "half",
  } as RequestInit);
  rawUrls.set(request, target);
  return { request, body: state };
}

/**
 * Resolves true when the socket wants more data (`event` "drain"; "finish": has taken all of
 * an ended response) or is gone, false when it did not within `ms` (the client stopped
 * reading); leaves no listener or timer behind.
 */
function drained(res: http.ServerResponse, ms: number, event: "drain" | "finish" = "drain"): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      res.off(event, done);
      res.off("close", done);
      resolve(ok);
    };
    const done = () => finish(true);
    const timer = setTimeout(() => finish(false), ms);
    res.on(event, done);
    res.on("close", done);
  });
}

async function sendResponse(req: http.IncomingMessage, res: http.ServerResponse, response: Response, body: BodyState, sendTimeoutMs: number): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  // A request body not read to its end (refused, cut off, timed out) is never drained: the
  // connection is closed after the response, so that a refused upload costs nothing more.
  // (`complete`: the whole body has arrived even though nobody read it, e.g. a small one.)
  if (body.expected && !body.ended && !req.complete) headers["connection"] = "close";
  if (!response.body || req.method === "HEAD") {
    res.writeHead(response.status, headers);
    res.end();
    return;
  }
  const whole = wholeBodies.get(response);
  if (whole !== undefined) {
    // Already in memory: no first chunk to wait for, and one write; the send timeout as below.
    res.writeHead(response.status, headers);
    if (unlentBodies.has(response)) {
      // Nothing to give back once written: the body goes with the end. What the socket did
      // not take yet still has the send timeout to be read in.
      res.end(whole);
      if (!res.writableFinished && !(await drained(res, sendTimeoutMs, "finish"))) {
        log.debug(`client did not read its response for ${sendTimeoutMs} ms: closing the connection`);
        res.destroy();
      }
      return;
    }
    if (!res.write(whole, () => chunkDone(whole)) && !(await drained(res, sendTimeoutMs))) {
      log.debug(`client did not read its response for ${sendTimeoutMs} ms: closing the connection`);
      res.destroy();
      return;
    }
    res.end();
    return;
  }
  const reader = response.body.getReader();
  let closed = false;
  res.once("close", () => {
    closed = true;
    if (!res.writableFinished) void reader.cancel().catch(() => {});
  });
  // The status is committed only once the body has produced its first bytes: a body that fails
  // at once (e.g. its object's blocks cannot be read) must not become "200 and nothing".
  let first: Awaited<ReturnType<typeof reader.read>>;
  try {
    first = await reader.read();
  } catch (err) {
    log.warn(`response stream failed before its first byte: ${(err as Error).message}; answering 503`);
    if (!closed) res.writeHead(503, { "content-length": "0", connection: "close" }).end();
    return;
  }
  if (closed) return;
  res.writeHead(response.status, headers);
  try {
    for (let step = first; !step.done && !closed; step = await reader.read()) {
      const chunk = step.value;
      // Lent block buffers (util/buffer-pool) go back to their pool once written out.
      if (!res.write(chunk, () => chunkDone(chunk)) && !(await drained(res, sendTimeoutMs))) {
        // The client has not read anything for the send timeout: it holds a connection and
        // our buffers for nothing. Cut, like a failed body (fewer bytes than announced).
        log.debug(`client did not read its response for ${sendTimeoutMs} ms: closing the connection`);
        res.destroy();
        return;
      }
    }
  } catch (err) {
    // The body failed mid-stream: the status line and Content-Length are gone, so cut the
    // connection; the client sees fewer bytes than announced (or an unterminated chunked
    // body), a visible truncation rather than a silently short object.
    log.warn(`response stream failed: ${(err as Error).message}`);
    res.destroy();
    return;
  }
  res.end();
}

/** The soft limit on open files of this process (Linux /proc), or undefined when unknown. */
function openFileLimit(): number | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/self/limits", "utf8");
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  return parseDecimal(soft, 1, Number.MAX_SAFE_INTEGER);
}

/** The connection bound of one server for a given open-file limit (see the constants). */
export function connectionLimitFor(fdLimit: number | undefined): number {
  if (fdLimit === undefined) return DEFAULT_MAX_CONNECTIONS;
  return Math.min(MAX_CONNECTIONS_CEILING, Math.max(MIN_CONNECTIONS, Math.floor(fdLimit * CONNECTION_SHARE_OF_FD_LIMIT)));
}

function bodyIdleTimeoutFromEnv(): number {
  return envMilliseconds(BODY_IDLE_TIMEOUT_ENV, BODY_IDLE_TIMEOUT_MS, 1);
}

export interface ServeOptions {
  host: string;
  port: number;
  /** Most connections open at once; by default a share of the open-file limit (connectionLimitFor). */
  maxConnections?: number;
  /** Longest silence of a request body being read; default BODY_IDLE_TIMEOUT_MS (or its env override). */
  bodyIdleTimeoutMs?: number;
  /** Longest time a client may leave its response unread; default SEND_TIMEOUT_MS. */
  sendTimeoutMs?: number;
}

/** What serveNode serves: an Elysia app, or a bare handler where no routing is needed (S3). */
export interface RequestHandler {
  handle(request: Request): Response | Promise<Response>;
}

export async function serveNode(app: RequestHandler, opts: ServeOptions): Promise<http.Server> {
  const idleMs = opts.bodyIdleTimeoutMs ?? bodyIdleTimeoutFromEnv();
  const sendTimeoutMs = opts.sendTimeoutMs ?? SEND_TIMEOUT_MS;
  const maxConnections = opts.maxConnections ?? connectionLimitFor(openFileLimit());
  // The response last begun on each socket: bytes the parser cannot take after a request
  // (more body than its Content-Length) must not cost that request its answer. Whether it is
  // still being answered is asked of it when needed (rarely), not tracked with two listeners
  // per request.
  const inFlight = new WeakMap<Socket, http.ServerResponse>();
  const onRequest = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    // Kept until the socket's next request replaces it: clientError asks whether it is done.
    inFlight.set(req.socket as Socket, res);
    try {
      const { request, body } = toRequest(req, idleMs);
      const response = await app.handle(request);
      await sendResponse(req, res, response, body, sendTimeoutMs);
    } catch (err) {
      log.error(`unhandled: ${(err as Error).stack ?? err}`);
      if (!res.headersSent) res.writeHead(500, { connection: "close" }).end();
      else res.destroy();
    }
  };
  const server = http.createServer(onRequest);
  // An Expect other than 100-continue (garbage, empty, "200") is answered 417 by node:http;
  // AWS ignores it and serves the request (Ceph s3-tests test_object_create_bad_expect_*).
  server.on("checkExpectation", onRequest);
  // server.maxConnections does nothing under Bun (measured), so connections are counted here.
  // One over the bound is accepted and closed at once: cheaper than letting it queue, and the
  // client sees a refusal instead of a hang.
  let open = 0;
  const limitLog = new RateLimitedLog(CONNECTION_LIMIT_LOG_INTERVAL_MS);
  server.on("connection", (socket: Socket) => {
    if (open >= maxConnections) {
      socket.destroy();
      limitLog.note("", (suppressed) =>
        log.warn(
          `${opts.host}:${opts.port}: ${maxConnections} connections open, the most allowed; refusing new ones until some close` +
            suppressedNote(suppressed, "connections refused"),
        ),
      );
      return;
    }
    open++;
    socket.once("close", () => open--);
  });
  // A parse error after a complete request (stray bytes past its body): the default handler
  // would answer 400 and close at once, and the request, already being handled, would lose its
  // own answer while its effect stays. HTTP/1.1 answers in order: that answer goes out first,
  // then the connection closes. With nothing in flight, a bare 400 and close.
  server.on("clientError", (_err: Error, socket: Socket) => {
    const res = inFlight.get(socket);
    if (res === undefined || res.writableFinished || res.destroyed) {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      else socket.destroy();
      return;
    }
    const cut = () => socket.destroy();
    res.once("finish", cut);
    res.once("close", cut);
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
