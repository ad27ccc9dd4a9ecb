// Resource limits at the edge, as an attacker without credentials meets them on a real server:
// the admin API refuses before reading a body (memory stays flat under a 128 MiB one) and
// bounds every body; a refused S3 body is not drained (Connection: close, socket closed); a
// stalled body gets RequestTimeout; a client that never finishes its request line is cut off.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { CreateBucketCommand, PutObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { MiB, sdkClient } from "../helpers/clients";
import { parseHead, rawConnect, within, type ResponseHead } from "../helpers/raw-http";

setDefaultTimeout(60_000);

/** The server's body idle timeout in these tests (BUNKER_BODY_IDLE_TIMEOUT_MS), short to keep them fast. */
const IDLE_MS = 1_000;
/** Generous bound for "promptly": far above what it takes, far below a drained or held connection. */
const PROMPTLY_MS = 10_000;
/** Most the server's memory may grow while refusing a huge body it must not read. */
const RSS_GROWTH_MAX = 48 * MiB;

let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer({ env: { BUNKER_BODY_IDLE_TIMEOUT_MS: String(IDLE_MS) } });
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: "edge" }));
});

afterAll(async () => {
  await server?.stop();
});

/** Resident memory of the server process (VmRSS). */
function serverRss(): number {
  const status = readFileSync(`/proc/${server.proc.pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
}

/** Time a refusal made from the headers alone has to arrive before the body is pushed. */
const HEADER_REFUSAL_WAIT_MS = 1_000;

/**
 * Sends `head`, gives the server HEADER_REFUSAL_WAIT_MS to answer from the headers alone, then
 * sends up to `total` body bytes, 1 MiB at a time, until the server answers or closes; returns
 * the response, how much of the body the socket took, and whether the server closed the
 * connection promptly after answering. (A client still writing when the server closes on
 * unread data may get a TCP reset that discards the answer: a client reading first sees it.)
 */
async function pushBody(port: number, head: string, total: number): Promise<{ response: ResponseHead; sent: number; closed: boolean }> {
  const c = await rawConnect(port);
  await c.send(head);
  await within(c.head(HEADER_REFUSAL_WAIT_MS).catch(() => undefined), HEADER_REFUSAL_WAIT_MS, undefined);
  const chunk = Buffer.alloc(MiB, "a");
  let sent = 0;
  while (sent < total && parseHead(c.received()) === undefined && (await c.send(chunk.subarray(0, Math.min(MiB, total - sent))))) sent += Math.min(MiB, total - sent);
  const response = await c.head(PROMPTLY_MS);
  const closed = (await within(c.closed, PROMPTLY_MS, "open")) !== "open";
  c.destroy();
  return { response, sent, closed };
}

function adminPost(path: string, length: number, extraHeaders = ""): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extraHeaders}\r\n{"name":"`;
}

describe("admin API", () => {
  const HUGE = 128 * MiB;

  for (const [what, auth, status] of [
    ["without a token", "", 401],
    ["with a wrong token", "Authorization: Bearer not-the-token\r\n", 403],
  ] as const) {
    test(`a 128 MiB body ${what} is refused (${status}) before it is read, and the connection closed`, async () => {
      const before = serverRss();
      const { response, sent, closed } = await pushBody(server.adminPort, adminPost("/v2/CreateKey", HUGE, auth), HUGE);
      expect(response.status).toBe(status);
      expect(closed).toBe(true);
      expect(response.headers.get("connection")?.toLowerCase()).toBe("close");
      // The server stopped taking bytes: only what the sockets' buffers hold got through.
      expect(sent).toBeLessThan(HUGE / 2);
      expect(serverRss() - before).toBeLessThan(RSS_GROWTH_MAX);
    });
  }

  test("with the token, a body declared over 1 MiB is refused with 413 before it is read", async () => {
    const { response, sent, closed } = await pushBody(server.adminPort, adminPost("/v2/CreateKey", 2 * MiB, `Authorization: Bearer ${server.adminToken}\r\n`), 2 * MiB);
    expect(response.status).toBe(413);
    expect(closed).toBe(true);
    expect(sent).toBeLessThan(2 * MiB);
  });

  test("with the token, a chunked body is cut at 1 MiB with 413", async () => {
    let pushed = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pushed >= 2 * MiB) return controller.close();
        pushed += 64 * 1024;
        controller.enqueue(new Uint8Array(64 * 1024).fill(0x61));
      },
    });
    const r = await fetch(`http://127.0.0.1:${server.adminPort}/v2/CreateKey`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    expect(r.status).toBe(413);
    expect(((await r.json()) as { code: string }).code).toBe("PayloadTooLarge");
  });

  test("a caller without the token never learns whether its body parses", async () => {
    const post = (body: string, token?: string) =>
      fetch(`http://127.0.0.1:${server.adminPort}/v2/CreateBucket`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body,
      });
    for (const body of ["not json", '{"globalAlias": 5}']) {
      const anonymous = await post(body);
      expect(anonymous.status).toBe(401);
      expect(await anonymous.text()).not.toMatch(/JSON|invalid request body/);
      expect((await post(body, "wrong")).status).toBe(403);
    }
    const notJson = await post("not json", server.adminToken);
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { message: string }).message).toMatch(/not valid JSON/);
    const badSchema = await post('{"globalAlias": 5}', server.adminToken);
    expect(badSchema.status).toBe(400);
    expect(((await badSchema.json()) as { message: string }).message).toMatch(/invalid request body/);
  });

  test("with the token, a deeply nested body is refused before validation (was: 4 s, +1 GiB RSS, or a stack overflow 500)", async () => {
    const before = serverRss();
    for (const [path, body] of [
      ["/v2/RemoveBucketAlias", `{"bucketId":${"[".repeat(10_000)}${"]".repeat(10_000)}}`],
      ["/v2/CreateKey", `{"name":${"[".repeat(10_000)}${"]".repeat(10_000)}}`],
    ] as const) {
      const r = await fetch(`http://127.0.0.1:${server.adminPort}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${server.adminToken}` },
        body,
      });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { message: string }).message).toMatch(/nests deeper/);
    }
    expect(serverRss() - before).toBeLessThan(48 * 1024 * 1024);
  });

  test("/health and /check answer without the token; an unknown path needs it", async () => {
    const base = `http://127.0.0.1:${server.adminPort}`;
    expect([200, 503]).toContain((await fetch(`${base}/health`)).status);
    expect((await fetch(`${base}/check?domain=nothing.example`)).status).toBe(404);
    expect((await fetch(`${base}/v2/NoSuchThing`)).status).toBe(401);
  });
});

describe("S3 API", () => {
  test("an unsigned PUT declaring 1e9 bytes gets its 403 with Connection: close, and the server closes the socket", async () => {
    const before = serverRss();
    const { response, sent, closed } = await pushBody(server.s3Port, "PUT /edge/big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\nabc", 256 * MiB);
    expect(response.status).toBe(403);
    expect(response.headers.get("connection")?.toLowerCase()).toBe("close");
    expect(response.body.toString()).toContain("<Code>AccessDenied</Code>");
    expect(closed).toBe(true);
    expect(sent).toBeLessThan(128 * MiB);
    expect(serverRss() - before).toBeLessThan(RSS_GROWTH_MAX);
  });

  test("a form POST that stalls after its multipart headers gets RequestTimeout after the idle timeout", async () => {
    const c = await rawConnect(server.s3Port);
    const part = '--b0undary\r\nContent-Disposition: form-data; name="key"\r\n\r\n';
    await c.send(`POST /edge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 100000\r\n\r\n${part}`);
    const response = await c.head(IDLE_MS + PROMPTLY_MS);
    expect(response.status).toBe(400);
    expect(response.headers.get("connection")?.toLowerCase()).toBe("close");
    expect(await within(c.closed, PROMPTLY_MS, "open")).not.toBe("open");
    expect(c.received().toString()).toContain("<Code>RequestTimeout</Code>");
  });

  test("a signed PUT whose body stalls gets RequestTimeout", async () => {
    // Ten bytes of the thousand declared, then nothing (the stream never ends).
    let sent = false;
    const body = new Readable({
      read() {
        if (!sent) {
          sent = true;
          this.push(Buffer.alloc(10, "x"));
        }
      },
    });
    const err = await s3.send(new PutObjectCommand({ Bucket: "edge", Key: "stalled", Body: body, ContentLength: 1000 })).catch((e: unknown) => e);
    body.destroy();
    expect(err).toBeInstanceOf(S3ServiceException);
    expect((err as S3ServiceException).name).toBe("RequestTimeout");
    expect((err as S3ServiceException).$metadata.httpStatusCode).toBe(400);
  });

  test("a client that never finishes its request line is cut off", async () => {
    const c = await rawConnect(server.s3Port);
    await c.send("GET /edge HT");
    // Bun cuts incomplete request heads at about 10 s (HEADERS_TIMEOUT_MS under Node).
    expect(await within(c.closed, 30_000, "open")).not.toBe("open");
    expect(c.received().length === 0 || parseHead(c.received())!.status >= 400).toBe(true);
  });
});
