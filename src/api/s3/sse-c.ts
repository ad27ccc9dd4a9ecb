// SSE-C at the S3 surface: reading the customer key from request headers (or PostObject form
// fields), echoing it in responses, and answering with AWS's errors when a request's key does not
// fit the object it reads or the upload it adds to. The key schedule and block format are in
// block/encryption.ts; this module never sees a block.
import { createHash, createHmac } from "node:crypto";
import { CUSTOMER_KEY_BYTES, UnsupportedEncryptionError, unlockDataKey, type DataKey, type EncryptionRecord } from "../../block/encryption";
import { S3Error } from "./errors";

/** The headers of the key to encrypt or decrypt the request's object. */
export const SSE_C_PREFIX = "x-amz-server-side-encryption-customer-";
/** The headers of the key of CopyObject's and UploadPartCopy's source object. */
export const SSE_C_COPY_SOURCE_PREFIX = "x-amz-copy-source-server-side-encryption-customer-";
export type SseCPrefix = typeof SSE_C_PREFIX | typeof SSE_C_COPY_SOURCE_PREFIX;

/** The one algorithm SSE-C names. */
const SSE_C_ALGORITHM = "AES256";
const MD5_BYTES = 16;

/** A customer key as a request gave it, checked against its MD5. */
export interface SseCKey {
  /** CUSTOMER_KEY_BYTES bytes; never logged, never stored. */
  key: Uint8Array;
  /** base64 MD5 of the key, as echoed in responses. */
  keyMd5: string;
}

/** Request headers, or PostObject's form fields (lowercase names). */
export interface FieldSource {
  get(name: string): string | null | undefined;
}

const SENTENCE = "Requests specifying Server Side Encryption with Customer provided keys must provide";

/** `value` when it is canonical base64 (what every client sends), else undefined. */
function strictBase64(value: string): Buffer | undefined {
  const bytes = Buffer.from(value, "base64");
  return bytes.toString("base64") === value ? bytes : undefined;
}

/**
 * The customer key of a request, or undefined when it names none (no header of the set). A
 * partial set, another algorithm, a key that is not 32 bytes of base64 or an MD5 that does not
 * match are refused with AWS's errors, in AWS's order. Messages name headers, never values.
 */
export function parseSseC(fields: FieldSource, prefix: SseCPrefix = SSE_C_PREFIX): SseCKey | undefined {
  const read = (suffix: string) => fields.get(prefix + suffix) ?? undefined;
  const algorithm = read("algorithm");
  const keyB64 = read("key");
  const md5B64 = read("key-md5");
  if (algorithm === undefined && keyB64 === undefined && md5B64 === undefined) return undefined;
  if (keyB64 === undefined) throw new S3Error("InvalidArgument", `${SENTENCE} an appropriate secret key.`);
  if (md5B64 === undefined) throw new S3Error("InvalidArgument", `${SENTENCE} the client calculated MD5 of the secret key.`);
  if (algorithm === undefined) throw new S3Error("InvalidArgument", `${SENTENCE} a valid encryption algorithm.`);
  if (algorithm !== SSE_C_ALGORITHM) {
    throw new S3Error("InvalidEncryptionAlgorithmError", `The encryption request that you specified is not valid. The valid value is ${SSE_C_ALGORITHM}.`);
  }
  const key = strictBase64(keyB64.trim());
  if (key?.length !== CUSTOMER_KEY_BYTES) throw new S3Error("InvalidArgument", `The secret key was invalid for the specified algorithm (${prefix}key).`);
  const computed = createHash("md5").update(key).digest();
  const given = strictBase64(md5B64.trim());
  if (given?.length !== MD5_BYTES || !given.equals(computed)) {
    throw new S3Error("InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was provided.");
  }
  return { key: new Uint8Array(key), keyMd5: computed.toString("base64") };
}

/** The headers a response to a request with an SSE-C key carries: the algorithm and key MD5, echoed. */
export function sseCResponseHeaders(keyMd5: string): Record<string, string> {
  return {
    "x-amz-server-side-encryption-customer-algorithm": SSE_C_ALGORITHM,
    "x-amz-server-side-encryption-customer-key-md5": keyMd5,
  };
}

/**
 * What is being keyed: `read` an object (GetObject, HeadObject, GetObjectAttributes, a copy
 * source) or `upload` to an open multipart upload (UploadPart, UploadPartCopy's destination,
 * CompleteMultipartUpload, ListParts), whose key was fixed by CreateMultipartUpload.
 */
export type SseCUse = "read" | "upload";

/**
 * The data key for a request's key on an object or upload stored under `record` (undefined:
 * stored in plaintext). Undefined when neither is encrypted; AWS's error when they do not fit:
 * a key for a plaintext object, no key for an encrypted one (400 each), a key that is not the
 * one it was stored with (403; 400 for an upload's part, as AWS answers).
 */
export function unlockSseC(record: EncryptionRecord | undefined, given: SseCKey | undefined, use: SseCUse): DataKey | undefined {
  if (record === undefined) {
    if (given === undefined) return undefined;
    throw new S3Error("InvalidRequest", "The encryption parameters are not applicable to this object.");
  }
  if (given === undefined) {
    throw use === "upload"
      ? new S3Error("InvalidRequest", "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.")
      : new S3Error("InvalidRequest", "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.");
  }
  let dataKey: DataKey | undefined;
  try {
    dataKey = unlockDataKey(record, given.key);
  } catch (err) {
    if (err instanceof UnsupportedEncryptionError) throw new S3Error("NotImplemented", `This object was encrypted by a newer version of Bunker: ${err.message}`);
    throw err;
  }
  if (dataKey) return dataKey;
  throw use === "upload"
    ? new S3Error("InvalidArgument", "The provided encryption parameters did not match the ones used originally.")
    : new S3Error("AccessDenied", "Access Denied");
}

/** Label of the ETag's MAC key, derived from the data key (never used for anything else). */
const ETAG_KEY_LABEL = "bunker sse-c etag v1";

/**
 * The ETag of a written body: the MD5 of its bytes, or for an SSE-C body a MAC of that MD5 under
 * the object's (or upload's) data key. AWS says an SSE-C ETag is not the MD5 of the data, and an
 * MD5 of the plaintext kept in metadata would let anyone holding it confirm a guess of the
 * content; a MAC does not, and stays the same for the same bytes under the same key (a part sent
 * twice keeps its ETag, as clients expect). In the MD5's form, so multipart ETags compose.
 */
export function bodyEtag(md5: Uint8Array, dataKey: DataKey | undefined): string {
  if (dataKey === undefined) return Buffer.from(md5).toString("hex");
  const etagKey = createHmac("sha256", dataKey).update(ETAG_KEY_LABEL).digest();
  return createHmac("sha256", etagKey).update(md5).digest().subarray(0, MD5_BYTES).toString("hex");
}

/**
 * The web endpoint's answer for an encrypted object (or an encrypted index or error document):
 * it is anonymous and cannot be given a key, so it never serves one, as AWS website endpoints
 * refuse objects they cannot decrypt for the caller.
 */
export function encryptedOnWebsite(): S3Error {
  return new S3Error("AccessDenied", "Access Denied");
}
