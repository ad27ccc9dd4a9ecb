// The node:http adapter (api/http.ts) as a client sees it on the wire: a response body that
// fails is never a complete-looking response, a request body nobody reads is not drained (the
// connection is closed), a silent body is cut after the idle timeout, a client that stops
// reading its response is cut after the send timeout (also when the whole body was in memory:
// bytesResponse), and connections over the bound are refused with one log line.
import { afterEach, describe, expect, test } from "bun:test";
import type { Server } from "node:http";
import { Elysia } from "elysia";
import { bytesResponse, connectionLimitFor, RequestBodyTimeout, serveNode } from "../../../src/api/http";
import { freePort } from "../../helpers/server";
import { rawConnect, within } from "../../helpers/raw-http";
import { captureStderr } from "../rpc/helpers";

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    s.close();
  }
});

async function serve(app: Elysia, opts: { maxConnections?: number; bodyIdleTimeoutMs?: number; sendTimeoutMs?: number } = {}): Promise<number> {
  const port = await freePort();
  servers.push(await serveNode(app, { host: "127.0.0.1", port, ...opts }));
  return port;
}

/** A body that sends `prefix` (if any), then fails. */
function failingBody(prefix?: string): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (prefix !== undefined && !sent) {
        sent = true;
        controller.enqueue(new TextEncoder().encode(prefix));
        return;
      }
      controller.error(new Error("block unreadable"));
    },
  });
}

/** Generous bound for "promptly": far above the milliseconds it takes, far below a hang. */
const PROMPTLY_MS = 5_000;

describe("a response body that fails", () => {
  test("before its first byte: 503 with an empty body and the connection closed, never a 200", async () => {
    const port = await serve(
      new Elysia().get("/obj", () => new Response(failingBody(), { status: 200, headers: { "content-length": "1000", etag: '"abc"' } })) as unknown as Elysia,
    );
    const c = await rawConnect(port);
    await c.send("GET /obj HTTP/1.1\r\nHost: x\r\n\r\n");
    const head = await c.head(PROMPTLY_MS);
    expect(head.status).toBe(503);
    expect(head.headers.get("content-length")).toBe("0");
    expect(head.headers.get("connection")?.toLowerCase()).toBe("close");
    expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
    expect(head.body.length).toBe(0);
  });

  test("after some bytes: the Content-Length is sent and the connection is cut short of it", async () => {
    const port = await serve(
      new Elysia().get("/obj", () => new Response(failingBody("first bytes"), { status: 200, headers: { "content-length": "1000" } })) as unknown as Elysia,
    );
    const c = await rawConnect(port);
    await c.send("GET /obj HTTP/1.1\r\nHost: x\r\n\r\n");
    const head = await c.head(PROMPTLY_MS);
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe("1000");
    expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
    const { body } = (await c.head(0))!;
    expect(body.toString()).toBe("first bytes");
    expect(body.length).toBeLessThan(1000);
  });
});

test("a client that stops reading its response is cut off after the send timeout", async () => {
  const app = new Elysia().get(
    "/big",
    () =>
      new Response(
        new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(new Uint8Array(64 * 1024)) }, { highWaterMark: 0 }),
        // Far more than the test could read in its time: it ends only if the server cuts it.
        { headers: { "content-length": String(2 ** 40) } },
      ),
  ) as unknown as Elysia;
  const port = await serve(app, { sendTimeoutMs: 300 });
  const c = await rawConnect(port);
  await c.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  c.socket.pause();
  await Bun.sleep(1_000);
  // A paused socket reports the close only once its buffered bytes are read.
  c.socket.resume();
  expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
  expect(c.received().length).toBeLessThan(64 * 1024 * 1024);
});

describe("a body held in memory (bytesResponse)", () => {
  test.each([true, false])("goes out byte for byte under its Content-Length, and the connection stays for the next request (lent: %p)", async (lent) => {
    const bytes = new Uint8Array(100_000).map((_, i) => i % 251);
    const port = await serve({ handle: () => bytesResponse(bytes, { status: 200, headers: { "content-length": String(bytes.length), etag: '"e"' } }, { lent }) } as unknown as Elysia);
    const c = await rawConnect(port);
    for (let i = 0; i < 2; i++) {
      const before = c.received().length;
      await c.send("GET /obj HTTP/1.1\r\nHost: x\r\n\r\n");
      await within(
        (async () => {
          while (c.received().length - before < bytes.length) await Bun.sleep(5);
        })(),
        PROMPTLY_MS,
        "timeout",
      );
      const text = c.received().subarray(before);
      const end = text.indexOf("\r\n\r\n") + 4;
      expect(text.subarray(0, end).toString("latin1")).toContain("content-length: 100000");
      expect(Buffer.compare(text.subarray(end), Buffer.from(bytes))).toBe(0);
    }
    expect(c.isClosed()).toBe(false);
    c.destroy();
  });

  for (const lent of [true, false]) {
    test(`a client that does not read it is cut off after the send timeout (${lent ? "a loan" : "no loan"})`, async () => {
      // Far more than the socket buffers take: the write waits for room that never comes.
      const bytes = new Uint8Array(32 * 1024 * 1024);
      const port = await serve({ handle: () => bytesResponse(bytes, { headers: { "content-length": String(bytes.length) } }, { lent }) } as unknown as Elysia, { sendTimeoutMs: 300 });
      const c = await rawConnect(port);
      await c.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
      c.socket.pause();
      await Bun.sleep(1_000);
      c.socket.resume();
      expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
      expect(c.received().length).toBeLessThan(bytes.length);
    });
  }
});

describe("request bodies", () => {
  const refuser = () =>
    new Elysia().put("/*", () => new Response("<Error><Code>AccessDenied</Code></Error>", { status: 403, headers: { "content-type": "application/xml" } }), {
      parse: "none",
    }) as unknown as Elysia;

  test("a refused body is not drained: the answer says Connection: close and the server closes the socket", async () => {
    const port = await serve(refuser());
    const c = await rawConnect(port);
    await c.send("PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nabc");
    const head = await c.head(PROMPTLY_MS);
    expect(head.status).toBe(403);
    expect(head.headers.get("connection")?.toLowerCase()).toBe("close");
    // The client keeps sending; a server draining the body would keep the socket open.
    const chunk = new Uint8Array(64 * 1024);
    const sending = (async () => {
      for (let i = 0; i < 1000 && (await c.send(chunk)); i++) await Bun.sleep(1);
    })();
    expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
    await sending;
  });

  test("a refused chunked body is not drained either; a refused request with Content-Length: 0 keeps its connection", async () => {
    const port = await serve(refuser());
    const chunked = await rawConnect(port);
    await chunked.send("PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    const head = await chunked.head(PROMPTLY_MS);
    expect(head.status).toBe(403);
    expect(head.headers.get("connection")?.toLowerCase()).toBe("close");
    expect(await within(chunked.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
    const empty = await rawConnect(port);
    await empty.send("PUT /b/k HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n");
    const emptyHead = await empty.head(PROMPTLY_MS);
    expect(emptyHead.status).toBe(403);
    expect(emptyHead.headers.get("connection")?.toLowerCase()).not.toBe("close");
    await Bun.sleep(100);
    expect(empty.isClosed()).toBe(false);
    empty.destroy();
  });

  test("bytes past a body's Content-Length do not cost the request its own answer (it goes out first, then the connection closes)", async () => {
    const echo = new Elysia().put(
      "/echo",
      async ({ request }) => {
        const n = (await request.arrayBuffer()).byteLength;
        await Bun.sleep(50); // still being answered when the stray bytes are parsed
        return new Response(String(n));
      },
      { parse: "none" },
    ) as unknown as Elysia;
    const port = await serve(echo);
    for (const connection of ["Connection: close\r\n", ""]) {
      const c = await rawConnect(port);
      await c.send(`PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n${connection}\r\nabcdef`);
      const head = await c.head(PROMPTLY_MS);
      expect(head.status).toBe(200);
      expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
      expect(c.received().toString("latin1")).toEndWith("\r\n\r\n1\r\n3\r\n0\r\n\r\n");
    }
  });

  test("garbage with no request in flight gets a bare 400 and the connection closes", async () => {
    const port = await serve(new Elysia().get("/", () => "hi") as unknown as Elysia);
    const c = await rawConnect(port);
    await c.send("NOT HTTP AT ALL\r\n\r\n");
    expect((await c.head(PROMPTLY_MS)).status).toBe(400);
    expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
  });

  test("garbage after an answered request on a kept-alive connection gets a bare 400 too", async () => {
    const port = await serve(new Elysia().get("/", () => "hi") as unknown as Elysia);
    const c = await rawConnect(port);
    await c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect((await c.head(PROMPTLY_MS)).status).toBe(200);
    await Bun.sleep(100); // answered in full before the garbage comes
    await c.send("NOT HTTP AT ALL\r\n\r\n");
    expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
    expect(c.received().toString("latin1")).toContain("HTTP/1.1 400 Bad Request");
  });

  test("a body read to its end keeps the connection for the next request", async () => {
    const port = await serve(new Elysia().put("/echo", async ({ request }) => new Response(String((await request.arrayBuffer()).byteLength)), { parse: "none" }) as unknown as Elysia);
    const c = await rawConnect(port);
    await c.send("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    const head = await c.head(PROMPTLY_MS);
    expect(head.status).toBe(200);
    expect(head.headers.get("connection")?.toLowerCase()).not.toBe("close");
    await Bun.sleep(100);
    expect(c.isClosed()).toBe(false);
    c.destroy();
  });

  test("a body silent for the idle timeout fails its reader with RequestBodyTimeout; the connection is closed", async () => {
    let failure: unknown;
    const app = new Elysia().put(
      "/slow",
      async ({ request }) => {
        try {
          await request.arrayBuffer();
        } catch (err) {
          failure = err;
        }
        return new Response("timed out", { status: 400 });
      },
      { parse: "none" },
    ) as unknown as Elysia;
    const port = await serve(app, { bodyIdleTimeoutMs: 300 });
    const c = await rawConnect(port);
    await c.send("PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    const head = await c.head(PROMPTLY_MS);
    expect(head.status).toBe(400);
    expect(failure).toBeInstanceOf(RequestBodyTimeout);
    expect(head.headers.get("connection")?.toLowerCase()).toBe("close");
    expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
  });
});

describe("connections", () => {
  test("the bound follows the open-file limit, within a floor and a ceiling", () => {
    expect(connectionLimitFor(300)).toBe(60);
    expect(connectionLimitFor(1024)).toBe(204);
    expect(connectionLimitFor(1 << 20)).toBe(512);
    expect(connectionLimitFor(20)).toBe(16);
    expect(connectionLimitFor(undefined)).toBe(256);
  });

  test("connections over the bound are closed at once, with one log line; freed slots are reused", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const app = new Elysia().get("/hold", async () => {
      await held;
      return new Response("done");
    }) as unknown as Elysia;
    const port = await serve(app, { maxConnections: 3 });
    const { output } = await captureStderr(async () => {
      const holders = [];
      for (let i = 0; i < 3; i++) {
        const c = await rawConnect(port);
        await c.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        holders.push(c);
      }
      await Bun.sleep(100);
      const extra = [];
      for (let i = 0; i < 5; i++) {
        const c = await rawConnect(port);
        await c.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
        extra.push(c);
      }
      for (const c of extra) expect(await within(c.closed, PROMPTLY_MS, "still open")).not.toBe("still open");
      for (const c of extra) expect(c.received().length).toBe(0);
      release();
      for (const c of holders) expect((await c.head(PROMPTLY_MS)).status).toBe(200);
      for (const c of holders) c.destroy();
      await Promise.all(holders.map((c) => c.closed));
      await Bun.sleep(100);
      const after = await fetch(`http://127.0.0.1:${port}/hold`);
      expect(after.status).toBe(200);
    });
    const lines = output.split("\n").filter((l) => l.includes("connections open, the most allowed"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("3 connections open");
  });
});
