// A raw HTTP/1.1 client on a node:net socket, for tests where the exact bytes matter: what a
// server sends (status line, headers, how many body bytes) and when it closes the connection,
// including for requests no real client would send (a huge declared body, a stalled one).
import { connect, type Socket } from "node:net";

export interface ResponseHead {
  status: number;
  /** Header names lowercased; the last value of a name wins. */
  headers: Map<string, string>;
  /** Body bytes received after the head so far. */
  body: Buffer;
}

export interface RawConnection {
  socket: Socket;
  /** Every byte received so far. */
  received(): Buffer;
  /** True once the server closed the connection (or it failed). */
  isClosed(): boolean;
  /** Resolves when the connection is closed, with the milliseconds since it was opened. */
  closed: Promise<number>;
  /** Writes and waits until the socket takes more; false when the connection is gone. */
  send(data: string | Uint8Array): Promise<boolean>;
  /** The response head, once received; rejects when none came within `ms`. */
  head(ms: number): Promise<ResponseHead>;
  destroy(): void;
}

/** The response head in `buf`, or undefined while it is incomplete. */
export function parseHead(buf: Buffer): ResponseHead | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1]);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status, headers, body: buf.subarray(end + 4) };
}

export async function rawConnect(port: number, host = "127.0.0.1"): Promise<RawConnection> {
  const socket = connect(port, host);
  const opened = Date.now();
  let data = Buffer.alloc(0);
  let closedFlag = false;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  socket.on("data", (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    wake();
  });
  socket.on("error", () => {});
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => {
      closedFlag = true;
      wake();
      resolve(Date.now() - opened);
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return {
    socket,
    received: () => data,
    isClosed: () => closedFlag,
    closed,
    async send(bytes) {
      if (closedFlag || socket.destroyed) return false;
      if (socket.write(bytes)) return true;
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off("drain", done);
          waiters.delete(done);
          resolve();
        };
        socket.on("drain", done);
        waiters.add(done); // a close wakes it too
      });
      return !closedFlag && !socket.destroyed;
    },
    head(ms) {
      return new Promise<ResponseHead>((resolve, reject) => {
        const check = () => {
          const head = parseHead(data);
          if (head) finish(() => resolve(head));
          else if (closedFlag) finish(() => reject(new Error(`connection closed without a response head; got ${JSON.stringify(data.toString("latin1"))}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`no response head within ${ms} ms`))), ms);
        const finish = (then: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          then();
        };
        waiters.add(check);
        check();
      });
    },
    destroy: () => socket.destroy(),
  };
}

/** Resolves with `p`'s value, or with `fallback` when `p` takes longer than `ms`. */
export function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]).finally(() => clearTimeout(timer));
}

export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** The server closed the connection (as opposed to a body complete per Content-Length). */
  closed: boolean;
}

/** One request whose response can be read slowly: pause() stops reading (the server backs up). */
export interface RawExchange {
  /** Resolves once the status line and headers arrived. */
  head: Promise<{ status: number; headers: Map<string, string> }>;
  pause(): void;
  resume(): void;
  /** Resolves when the body is complete (per Content-Length) or the connection ends. */
  done: Promise<RawResponse>;
  socket: Socket;
}

/** Most bytes of a response head accepted before the test gives up on it. */
const MAX_HEAD_BYTES = 64 * 1024;

export function rawRequest(port: number, request: string, timeoutMs = 30_000): RawExchange {
  const socket = connect({ host: "127.0.0.1", port });
  let buf = Buffer.alloc(0);
  let head: ResponseHead | undefined;
  let bodyStart = 0;
  let resolveHead!: (h: { status: number; headers: Map<string, string> }) => void;
  let rejectHead!: (e: Error) => void;
  const headP = new Promise<{ status: number; headers: Map<string, string> }>((res, rej) => {
    resolveHead = res;
    rejectHead = rej;
  });
  headP.catch(() => {});
  let finish!: (r: RawResponse) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<RawResponse>((res, rej) => {
    finish = res;
    fail = rej;
  });
  const timer = setTimeout(() => {
    socket.destroy();
    const e = new Error(`raw request got no complete answer within ${timeoutMs} ms: ${request.split("\r\n")[0]}`);
    rejectHead(e);
    fail(e);
  }, timeoutMs);
  const complete = (closed: boolean) => {
    clearTimeout(timer);
    if (!head) {
      const e = new Error(`connection ended before the response head (${buf.length} bytes: ${buf.toString("latin1").slice(0, 200)})`);
      rejectHead(e);
      fail(e);
      return;
    }
    finish({ status: head.status, headers: head.headers, body: buf.subarray(bodyStart), closed });
  };
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!head) {
      head = parseHead(buf);
      if (!head) {
        if (buf.length > MAX_HEAD_BYTES) socket.destroy(new Error("response head too long"));
        return;
      }
      bodyStart = buf.length - head.body.length;
      resolveHead({ status: head.status, headers: head.headers });
    }
    const length = head.headers.get("content-length");
    if (length !== undefined && buf.length - bodyStart >= Number(length)) {
      complete(false);
      socket.destroy();
    }
  });
  socket.on("close", () => complete(true));
  socket.on("error", () => {});
  socket.write(request);
  return { head: headP, pause: () => socket.pause(), resume: () => socket.resume(), done, socket };
}

/**
 * A GET of `pathAndQuery` (already signed if it needs to be, e.g. a presigned URL's path), with
 * `Connection: close` so that a response of any framing ends with the connection.
 */
export function rawGet(port: number, pathAndQuery: string, host = `127.0.0.1:${port}`, extraHeaders: Record<string, string> = {}): RawExchange {
  const lines = [`GET ${pathAndQuery} HTTP/1.1`, `Host: ${host}`, "Connection: close", ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`), "", ""];
  return rawRequest(port, lines.join("\r\n"));
}
