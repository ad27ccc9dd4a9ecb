// One HTTP/1.1 request over a raw socket, for tests that must see exactly what a client gets:
// the status line, whether Content-Length was sent, how many body bytes arrived before the
// server closed, and with the option to stop reading for a while (a slow client).
import { connect, type Socket } from "node:net";

export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** The server closed the connection (as opposed to a complete keep-alive response). */
  closed: boolean;
}

export interface RawExchange {
  /** Resolves once the status line and headers arrived. */
  head: Promise<{ status: number; headers: Map<string, string> }>;
  /** Stops reading from the socket: the server's writes back up. */
  pause(): void;
  resume(): void;
  /** Body bytes received so far. */
  received(): number;
  /** Resolves when the body is complete (per Content-Length) or the connection ends. */
  done: Promise<RawResponse>;
  socket: Socket;
}

/** Most bytes of headers accepted from the server before the test gives up. */
const MAX_HEAD_BYTES = 64 * 1024;

export function rawRequest(port: number, request: string, timeoutMs = 30_000): RawExchange {
  const socket = connect({ host: "127.0.0.1", port });
  let buf = Buffer.alloc(0);
  let head: { status: number; headers: Map<string, string>; bodyStart: number } | undefined;
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
    finish({ status: head.status, headers: head.headers, body: buf.subarray(head.bodyStart), closed });
  };
  socket.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!head) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buf.length > MAX_HEAD_BYTES) socket.destroy(new Error("response head too long"));
        return;
      }
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(lines[0]!.split(" ")[1]);
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const i = line.indexOf(":");
        headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      head = { status, headers, bodyStart: end + 4 };
      resolveHead({ status, headers });
    }
    const length = head.headers.get("content-length");
    if (length !== undefined && buf.length - head.bodyStart >= Number(length)) {
      complete(false);
      socket.destroy();
    }
  });
  socket.on("close", () => complete(true));
  socket.on("error", () => {});
  socket.write(request);
  return {
    head: headP,
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    received: () => (head ? buf.length - head.bodyStart : 0),
    done,
    socket,
  };
}

/**
 * A GET of `pathAndQuery` (already signed if it needs to be, e.g. a presigned URL's path), with
 * `Connection: close` so that a response of any framing ends with the connection.
 */
export function rawGet(port: number, pathAndQuery: string, host = `127.0.0.1:${port}`, extraHeaders: Record<string, string> = {}): RawExchange {
  const lines = [`GET ${pathAndQuery} HTTP/1.1`, `Host: ${host}`, "Connection: close", ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`), "", ""];
  return rawRequest(port, lines.join("\r\n"));
}
