// SigV4-signed raw HTTP requests to a test server, for requests an SDK will not send as they
// are (any method, sub-resource, header or query), with the server's test key.
import { createHash, createHmac } from "node:crypto";
import { SignatureV4 } from "@smithy/signature-v4";
import type { TestServer } from "./server";

function toBytes(d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof d === "string") return d;
  return d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** The hash the signer asks for, on node:crypto. */
export class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret ? createHmac("sha256", toBytes(secret)) : createHash("sha256");
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(toBytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest());
  }
}

export interface SignedRequest {
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Host header (vhost-style requests); the server's loopback address by default. */
  host?: string;
  /** The region signed for; the server's by default. */
  region?: string;
}

/** Where a signed request goes and whose key signs it: a test server, or any S3 endpoint. */
export interface SigningTarget {
  /** `host:port` the request is sent to. */
  address: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * Signs `method target` (a raw path and query, e.g. `/bucket/key?versionId=x`) with the
 * server's key and sends it; the body's SHA-256 is signed too.
 */
export async function signedFetch(server: TestServer, method: string, target: string, req: SignedRequest = {}): Promise<Response> {
  const to = { address: `127.0.0.1:${server.s3Port}`, region: server.region, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
  return signedFetchTo(to, method, target, req);
}

/** signedFetch to any endpoint (e.g. a node in a network namespace); `signal` aborts it. */
export async function signedFetchTo(to: SigningTarget, method: string, target: string, req: SignedRequest & { signal?: AbortSignal } = {}): Promise<Response> {
  const host = req.host ?? to.address;
  const qi = target.indexOf("?");
  const path = qi < 0 ? target : target.slice(0, qi);
  const query: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(qi < 0 ? "" : target.slice(qi + 1))) query[k] = v;
  const signer = new SignatureV4({
    service: "s3",
    region: req.region ?? to.region,
    credentials: { accessKeyId: to.accessKeyId, secretAccessKey: to.secretAccessKey },
    sha256: Sha256,
    uriEscapePath: false,
  });
  const body = req.body ?? "";
  const signed = await signer.sign({
    method,
    protocol: "http:",
    hostname: host,
    path,
    query,
    headers: { ...req.headers, host, "x-amz-content-sha256": createHash("sha256").update(body).digest("hex") },
    body,
  });
  return fetch(`http://${to.address}${target}`, {
    method,
    headers: signed.headers as Record<string, string>,
    body: method === "GET" || method === "HEAD" ? undefined : body,
    signal: req.signal,
  });
}

/** The `<Code>` of an S3 XML error body ("" when there is none, e.g. on HEAD). */
export function errorCode(body: string): string {
  return /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? "";
}

// ---------------------------------------------------------------------------------------
// SigV2, written from AWS's "Signing and authenticating REST requests" (not from the
// server's code): HMAC-SHA1 of method, Content-MD5, Content-Type, Date (or Expires),
// x-amz-* headers and the resource.

/** The sub-resources AWS's documentation lists for the V2 resource (and cors, tagging). */
const V2_SUBRESOURCES = new Set([
  "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy", "requestPayment",
  "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website",
  "response-content-type", "response-content-language", "response-expires", "response-cache-control",
  "response-content-disposition", "response-content-encoding",
]);

export interface SigV2Signing {
  /** Header names and values as sent (byte strings); Date or x-amz-date among them for header auth. */
  headers: Record<string, string>;
  /** The bucket the Host header names (virtual-hosted style): it leads the resource. */
  virtualHostBucket?: string;
  /** The Date position: the Date header's value, "" with x-amz-date, or the presigned Expires. */
  date: string;
}

/** The V2 string to sign of `method target` (target: raw path and query, as sent). */
export function stringToSignV2(method: string, target: string, s: SigV2Signing): string {
  const qi = target.indexOf("?");
  const path = qi < 0 ? target : target.slice(0, qi);
  const lower = Object.entries(s.headers).map(([n, v]): [string, string] => [n.toLowerCase(), v.trim()]);
  const get = (n: string) => lower.find(([h]) => h === n)?.[1] ?? "";
  const amz = lower.filter(([n]) => n.startsWith("x-amz-")).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const subs = (qi < 0 ? [] : target.slice(qi + 1).split("&"))
    .map((p) => [p.split("=")[0]!, p] as const)
    .filter(([n]) => V2_SUBRESOURCES.has(n))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, p]) => decodeURIComponent(p));
  const resource = (s.virtualHostBucket ? `/${s.virtualHostBucket}` : "") + path + (subs.length ? `?${subs.join("&")}` : "");
  return [method, get("content-md5"), get("content-type"), s.date, ...amz.map(([n, v]) => `${n}:${v}`), resource].join("\n");
}

/** Base64 HMAC-SHA1 of a string to sign, given as the bytes signed (a byte string) or as UTF-8 text. */
export function signatureV2(secret: string, stringToSign: string | Uint8Array): string {
  return createHmac("sha1", secret).update(stringToSign).digest("base64");
}

/**
 * Signs `method target` with SigV2 in the Authorization header (the server's key, x-amz-date
 * now unless the headers carry a Date or x-amz-date) and sends it.
 */
export async function signedFetchV2(server: TestServer, method: string, target: string, req: SignedRequest & { virtualHostBucket?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { ...req.headers };
  const has = (n: string) => Object.keys(headers).some((h) => h.toLowerCase() === n);
  if (!has("date") && !has("x-amz-date")) headers["x-amz-date"] = new Date().toUTCString();
  const date = has("x-amz-date") ? "" : Object.entries(headers).find(([h]) => h.toLowerCase() === "date")![1];
  const sts = stringToSignV2(method, target, { headers, date, virtualHostBucket: req.virtualHostBucket });
  headers.authorization = `AWS ${server.accessKeyId}:${signatureV2(server.secretAccessKey, sts)}`;
  if (req.host) headers.host = req.host;
  return fetch(`http://127.0.0.1:${server.s3Port}${target}`, {
    method,
    headers,
    body: method === "GET" || method === "HEAD" ? undefined : (req.body ?? ""),
  });
}

/** A V2 presigned target (AWSAccessKeyId, Expires, Signature) valid until `expiresAt` (seconds since the epoch). */
export function presignV2(server: TestServer, method: string, target: string, expiresAt: number, virtualHostBucket?: string): string {
  const sts = stringToSignV2(method, target, { headers: {}, date: String(expiresAt), virtualHostBucket });
  const signature = encodeURIComponent(signatureV2(server.secretAccessKey, sts));
  return `${target}${target.includes("?") ? "&" : "?"}AWSAccessKeyId=${server.accessKeyId}&Expires=${expiresAt}&Signature=${signature}`;
}
