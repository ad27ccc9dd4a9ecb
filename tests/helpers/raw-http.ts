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
