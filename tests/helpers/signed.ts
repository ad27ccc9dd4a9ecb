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
}

/**
 * Signs `method target` (a raw path and query, e.g. `/bucket/key?versionId=x`) with the
 * server's key and sends it; the body's SHA-256 is signed too.
 */
export async function signedFetch(server: TestServer, method: string, target: string, req: SignedRequest = {}): Promise<Response> {
  const host = req.host ?? `127.0.0.1:${server.s3Port}`;
  const qi = target.indexOf("?");
  const path = qi < 0 ? target : target.slice(0, qi);
  const query: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(qi < 0 ? "" : target.slice(qi + 1))) query[k] = v;
  const signer = new SignatureV4({
    service: "s3",
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
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
  return fetch(`http://127.0.0.1:${server.s3Port}${target}`, {
    method,
    headers: signed.headers as Record<string, string>,
    body: method === "GET" || method === "HEAD" ? undefined : body,
  });
}

/** The `<Code>` of an S3 XML error body ("" when there is none, e.g. on HEAD). */
export function errorCode(body: string): string {
  return /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? "";
}
