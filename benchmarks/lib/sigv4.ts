// A minimal AWS SigV4 signer for the benchmark client: header-based auth, path-style URLs,
// signed headers host + x-amz-content-sha256 + x-amz-date. Large bodies are sent as
// UNSIGNED-PAYLOAD so the client never hashes them (the client must not be the bottleneck).
import { createHash, createHmac } from "node:crypto";

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** RFC 3986 encoding as SigV4 wants it (unreserved characters kept). */
export function uriEncode(s: string, keepSlash: boolean): string {
  let out = encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  if (keepSlash) out = out.replace(/%2F/g, "/");
  return out;
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export class Signer {
  private keyDate = "";
  private signingKey: Buffer = Buffer.alloc(0);

  constructor(private readonly creds: Credentials) {}

  private keyFor(date: string): Buffer {
    if (date !== this.keyDate) {
      const kDate = hmac("AWS4" + this.creds.secretAccessKey, date);
      this.signingKey = hmac(hmac(hmac(kDate, this.creds.region), "s3"), "aws4_request");
      this.keyDate = date;
    }
    return this.signingKey;
  }

  /**
   * Headers for a request. `path` is the already-encoded canonical path, `query` the
   * decoded query parameters (they are encoded and sorted here).
   */
  sign(method: string, host: string, path: string, query: Record<string, string>, payloadHash: string, now = new Date()): Record<string, string> {
    const amzDate = now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
    const date = amzDate.slice(0, 8);
    const canonicalQuery = Object.keys(query)
      .sort()
      .map((k) => `${uriEncode(k, false)}=${uriEncode(query[k]!, false)}`)
      .join("&");
    const signedHeaders = "host;x-amz-content-sha256;x-amz-date";
    const canonicalRequest = [
      method,
      path,
      canonicalQuery,
      `host:${host}\nx-amz-content-sha256:${payloadHash}\nx-amz-date:${amzDate}\n`,
      signedHeaders,
      payloadHash,
    ].join("\n");
    const scope = `${date}/${this.creds.region}/s3/aws4_request`;
    const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
    const signature = createHmac("sha256", this.keyFor(date)).update(stringToSign).digest("hex");
    return {
      "x-amz-date": amzDate,
      "x-amz-content-sha256": payloadHash,
      authorization: `AWS4-HMAC-SHA256 Credential=${this.creds.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    };
  }
}
