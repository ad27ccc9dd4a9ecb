// Hand-built HTTP requests for tests where the exact bytes matter (fuzzing, odd targets and
// headers): a SigV4 signer written from the AWS specification (header auth, presigned query,
// aws-chunked bodies, POST policies), independent of the server's own code, and one raw
// HTTP/1.1 exchange over node:net with a deadline.
//
// Strings here are byte strings: every character is one byte (latin1) on the wire, which is
// also how node:http hands header values to the server.
import { connect } from "node:net";
import { createHash, createHmac } from "node:crypto";

export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmac(key: string | Uint8Array, data: string | Uint8Array): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

export function signingKey(c: SigV4Credentials, date: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${c.secretAccessKey}`, date), c.region), "s3"), "aws4_request");
}

/** 20130524T000000Z */
export function amzDate(ms = Date.now()): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * AWS URI-encoding of a component as sent: "%XX" escapes are bytes, a "%" without two hex
 * digits is itself, other characters are their UTF-8 bytes; then every byte outside
 * A-Z a-z 0-9 - . _ ~ is "%XX" in upper case. So "~", "%7e" and "%7E" sign alike.
 */
export function awsUriEncode(component: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < component.length; i++) {
    const c = component.charCodeAt(i);
    if (c === 0x25 && i + 2 < component.length && hex(component.charCodeAt(i + 1)) >= 0 && hex(component.charCodeAt(i + 2)) >= 0) {
      bytes.push(hex(component.charCodeAt(i + 1)) * 16 + hex(component.charCodeAt(i + 2)));
      i += 2;
    } else {
      bytes.push(...Buffer.from(component[i]!, "utf8"));
    }
  }
  let out = "";
  for (const b of bytes) {
    const ch = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(ch) ? ch : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function canonicalQueryOf(rawQuery: string, skip?: string): string {
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const [n, v] = eq < 0 ? [part, ""] : [part.slice(0, eq), part.slice(eq + 1)];
    const name = awsUriEncode(n);
    if (name !== skip) pairs.push([name, awsUriEncode(v)]);
  }
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([n, v]) => `${n}=${v}`).join("&");
}

export type HeaderList = [string, string][];

function canonicalHeadersOf(headers: HeaderList, signed: readonly string[]): string {
  const values = new Map<string, string[]>();
  for (const [n, v] of headers) {
    const name = n.toLowerCase();
    // Header values arrive at the server as latin1 and are hashed as UTF-8 text, as the SDKs do.
    const text = v.trim().replace(/\s+/g, " ");
    values.set(name, [...(values.get(name) ?? []), text]);
  }
  return signed.map((n) => `${n}:${(values.get(n) ?? []).join(",")}\n`).join("");
}

function splitTarget(target: string): { path: string; query: string } {
  const qi = target.indexOf("?");
  return qi < 0 ? { path: target, query: "" } : { path: target.slice(0, qi), query: target.slice(qi + 1) };
}

function stringToSign(method: string, target: string, headers: HeaderList, signed: string[], payloadHash: string, date: string, scope: string, skipQuery?: string): string {
  const { path, query } = splitTarget(target);
  const canonical = [
    method,
    path.split("/").map(awsUriEncode).join("/"),
    canonicalQueryOf(query, skipQuery),
    canonicalHeadersOf(headers, signed),
    signed.join(";"),
    payloadHash,
  ].join("\n");
  return `AWS4-HMAC-SHA256\n${date}\n${scope}\n${sha256Hex(Buffer.from(canonical, "utf8"))}`;
}

export interface SignedHeaderAuth {
  /** The headers to send: the input plus x-amz-date, x-amz-content-sha256 and Authorization. */
  headers: HeaderList;
  signature: string;
  signingKey: Buffer;
  date: string;
  scope: string;
}

/**
 * Signs a request in the Authorization header. `headers` must hold Host; every header given
 * is signed unless listed in `unsigned` (to test coverage checks).
 */
export function signHeaders(
  c: SigV4Credentials,
  method: string,
  target: string,
  headers: HeaderList,
  payloadHash: string,
  opts: { now?: number; unsigned?: readonly string[] } = {},
): SignedHeaderAuth {
  const date = amzDate(opts.now);
  const scope = `${date.slice(0, 8)}/${c.region}/s3/aws4_request`;
  const all: HeaderList = [...headers, ["x-amz-date", date], ["x-amz-content-sha256", payloadHash]];
  const skip = new Set((opts.unsigned ?? []).map((n) => n.toLowerCase()));
  const signed = [...new Set(all.map(([n]) => n.toLowerCase()))].filter((n) => !skip.has(n)).sort();
  const key = signingKey(c, date.slice(0, 8));
  const signature = hmac(key, stringToSign(method, target, all, signed, payloadHash, date, scope)).toString("hex");
  all.push(["Authorization", `AWS4-HMAC-SHA256 Credential=${c.accessKeyId}/${scope}, SignedHeaders=${signed.join(";")}, Signature=${signature}`]);
  return { headers: all, signature, signingKey: key, date, scope };
}

/** A presigned target (X-Amz-* in the query, UNSIGNED-PAYLOAD) signing `headers` (Host at least). */
export function presignTarget(c: SigV4Credentials, method: string, target: string, headers: HeaderList, expiresSeconds: number, now?: number): string {
  const date = amzDate(now);
  const scope = `${date.slice(0, 8)}/${c.region}/s3/aws4_request`;
  const signed = [...new Set(headers.map(([n]) => n.toLowerCase()))].sort();
  const auth = [
    "X-Amz-Algorithm=AWS4-HMAC-SHA256",
    `X-Amz-Credential=${encodeURIComponent(`${c.accessKeyId}/${scope}`)}`,
    `X-Amz-Date=${date}`,
    `X-Amz-Expires=${expiresSeconds}`,
    `X-Amz-SignedHeaders=${encodeURIComponent(signed.join(";"))}`,
  ].join("&");
  const { query } = splitTarget(target);
  const unsignedTarget = target + (query === "" && !target.includes("?") ? "?" : "&") + auth;
  const signature = hmac(signingKey(c, date.slice(0, 8)), stringToSign(method, unsignedTarget, headers, signed, "UNSIGNED-PAYLOAD", date, scope)).toString("hex");
  return `${unsignedTarget}&X-Amz-Signature=${signature}`;
}

/**
 * An aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD): `data` cut at `sizes` (the rest in
 * one last chunk), each chunk signed after the previous one, seeded with the request signature.
 */
export function signedChunkedBody(data: Uint8Array, sizes: readonly number[], auth: { signingKey: Buffer; date: string; scope: string; signature: string }): Buffer {
  const parts: Buffer[] = [];
  let prev = auth.signature;
  const chunk = (bytes: Uint8Array) => {
    const sts = `AWS4-HMAC-SHA256-PAYLOAD\n${auth.date}\n${auth.scope}\n${prev}\n${EMPTY_SHA256}\n${sha256Hex(bytes)}`;
    prev = hmac(auth.signingKey, sts).toString("hex");
    parts.push(Buffer.from(`${bytes.length.toString(16)};chunk-signature=${prev}\r\n`), Buffer.from(bytes), Buffer.from("\r\n"));
  };
  let off = 0;
  for (const s of sizes) {
    if (off >= data.length) break;
    const n = Math.min(s, data.length - off);
    if (n <= 0) continue;
    chunk(data.subarray(off, off + n));
    off += n;
  }
  if (off < data.length) chunk(data.subarray(off));
  chunk(new Uint8Array(0));
  return Buffer.concat(parts);
}

/** An aws-chunked body without signatures (STREAMING-UNSIGNED-PAYLOAD-TRAILER), with trailers. */
export function unsignedChunkedBody(data: Uint8Array, chunkSize: number, trailers: HeaderList): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += chunkSize) {
    const bytes = data.subarray(off, off + chunkSize);
    parts.push(Buffer.from(`${bytes.length.toString(16)}\r\n`), Buffer.from(bytes), Buffer.from("\r\n"));
  }
  parts.push(Buffer.from("0\r\n"));
  for (const [n, v] of trailers) parts.push(Buffer.from(`${n}:${v}\r\n`, "latin1"));
  parts.push(Buffer.from("\r\n"));
  return Buffer.concat(parts);
}

/** The form fields that authenticate a browser POST upload of `policy` (a JSON document). */
export function postPolicyFields(c: SigV4Credentials, policy: string, now?: number): HeaderList {
  const date = amzDate(now);
  const b64 = Buffer.from(policy, "utf8").toString("base64");
  return [
    ["policy", b64],
    ["x-amz-algorithm", "AWS4-HMAC-SHA256"],
    ["x-amz-credential", `${c.accessKeyId}/${date.slice(0, 8)}/${c.region}/s3/aws4_request`],
    ["x-amz-date", date],
    ["x-amz-signature", hmac(signingKey(c, date.slice(0, 8)), b64).toString("hex")],
  ];
}

// ---------------------------------------------------------------------------------------

export interface RawRequest {
  method: string;
  /** Request target exactly as sent (path and query). */
  target: string;
  headers: HeaderList;
  body: Uint8Array;
  /** Half-close the socket once everything is written (a body shorter than announced ends there). */
  halfClose?: boolean;
}

export interface RawResponse {
  /** 0 when no status line came back. */
  status: number;
  headers: HeaderList;
  /** The body as received (chunked framing removed), cut at `keepBody` bytes. */
  body: Buffer;
  /** How the exchange ended: a whole response, the server closing early, or our deadline. */
  ending: "complete" | "closed" | "timeout" | "error";
  error?: string;
}

export function requestBytes(r: RawRequest): Buffer {
  const head = `${r.method} ${r.target} HTTP/1.1\r\n${r.headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;
  return Buffer.concat([Buffer.from(head, "latin1"), Buffer.from(r.body)]);
}

const RESPONSE_HEAD_MAX = 64 * 1024;

/** Parses what arrived so far; `done` once the response is complete by its own framing. */
function parseResponse(buf: Buffer, total: number, isHead: boolean, keepBody: number): { done: boolean; status: number; headers: HeaderList; body: Buffer } | undefined {
  let start = 0;
  for (;;) {
    const end = buf.indexOf("\r\n\r\n", start);
    if (end < 0) return undefined;
    const lines = buf.subarray(start, end).toString("latin1").split("\r\n");
    const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(lines[0]!)?.[1] ?? 0);
    const headers = lines.slice(1).map((l): [string, string] => {
      const c = l.indexOf(":");
      return [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()];
    });
    const bodyStart = end + 4;
    // Interim answers (100 Continue) come before the real one.
    if (status >= 100 && status < 200) {
      start = bodyStart;
      continue;
    }
    const get = (n: string) => headers.find(([h]) => h === n)?.[1];
    if (isHead || status === 204 || status === 304) return { done: true, status, headers, body: Buffer.alloc(0) };
    const rest = buf.subarray(bodyStart);
    const cl = get("content-length");
    if (cl !== undefined) {
      const n = Number(cl);
      return { done: total - bodyStart >= n, status, headers, body: rest.subarray(0, Math.min(n, keepBody)) };
    }
    if (/chunked/i.test(get("transfer-encoding") ?? "")) {
      const out: Buffer[] = [];
      let off = 0;
      let kept = 0;
      for (;;) {
        const le = rest.indexOf("\r\n", off);
        if (le < 0) return { done: false, status, headers, body: Buffer.concat(out) };
        const size = parseInt(rest.subarray(off, le).toString("latin1"), 16);
        if (!Number.isFinite(size)) return { done: true, status, headers, body: Buffer.concat(out) };
        if (size === 0) return { done: rest.indexOf("\r\n\r\n", le) >= 0 || rest.indexOf("\r\n", le + 2) >= 0, status, headers, body: Buffer.concat(out) };
        if (rest.length < le + 2 + size + 2) return { done: false, status, headers, body: Buffer.concat(out) };
        if (kept < keepBody) {
          const piece = rest.subarray(le + 2, le + 2 + Math.min(size, keepBody - kept));
          out.push(piece);
          kept += piece.length;
        }
        off = le + 2 + size + 2;
      }
    }
    return { done: false, status, headers, body: rest.subarray(0, keepBody) };
  }
}

/**
 * Sends one request on a fresh connection and reads one response: until its framing says it
 * is complete, the server closes, or `timeoutMs` passes. Never throws.
 */
export function rawExchange(port: number, r: RawRequest, opts: { timeoutMs: number; keepBody?: number; host?: string }): Promise<RawResponse> {
  const keepBody = opts.keepBody ?? 4096;
  const isHead = r.method === "HEAD";
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const sock = connect({ port, host: opts.host ?? "127.0.0.1" });
    const finish = (ending: RawResponse["ending"], error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const parsed = parseResponse(Buffer.concat(chunks), size, isHead, keepBody);
      resolve({
        status: parsed?.status ?? 0,
        headers: parsed?.headers ?? [],
        body: parsed?.body ?? Buffer.alloc(0),
        ending: parsed?.done ? "complete" : ending,
        error,
      });
    };
    const timer = setTimeout(() => finish("timeout"), opts.timeoutMs);
    sock.on("connect", () => {
      sock.write(requestBytes(r), () => {
        if (r.halfClose) sock.end();
      });
    });
    sock.on("data", (d: Buffer) => {
      // Past the head, only `keepBody` bytes matter; the rest is counted, not kept.
      if (size < RESPONSE_HEAD_MAX + keepBody) chunks.push(d);
      size += d.length;
      const parsed = parseResponse(Buffer.concat(chunks), size, isHead, keepBody);
      if (parsed?.done) finish("complete");
    });
    // A server that answers early and closes may reset our pending write: the answer still counts.
    sock.on("error", (e) => finish("error", e.message));
    sock.on("close", () => finish("closed"));
  });
}
