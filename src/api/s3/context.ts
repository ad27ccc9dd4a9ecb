// What every S3 handler receives: the parsed request, the authenticated key, the resolved
// bucket, and the node's services.
import type { BlockManager } from "../../block/manager";
import type { HashPool } from "../../block/hash";
import type { Model } from "../../model/model";
import type { KeyEntry } from "../../model/key";
import type { BucketEntry } from "../../model/bucket";
import type { AuthContext } from "./sigv4";
import type { StoreServices } from "../../model/body-writer";

export interface S3Settings {
  region: string;
  rootDomain?: string;
  blockSize: number;
}

export interface S3Services {
  model: Model;
  blocks: BlockManager;
  hasher: HashPool;
  settings: S3Settings;
}

export interface S3Request {
  request: Request;
  method: string;
  /** Decoded query parameters (first value wins, as S3). */
  query: URLSearchParams;
  headers: Headers;
  requestId: string;
  /** Bucket name from the path or the Host (vhost style); undefined for ListBuckets. */
  bucketName?: string;
  /** Object key, percent-decoded; undefined for bucket-level requests. */
  key?: string;
  auth: AuthContext;
  apiKey: KeyEntry;
  services: S3Services;
}

/** A request on a bucket that exists and that the key may use. */
export interface BucketRequest extends S3Request {
  bucketName: string;
  bucket: BucketEntry;
}

export interface ObjectRequest extends BucketRequest {
  key: string;
}

/** What the object writer needs of the node's services. */
export function storeServices(s: S3Services): StoreServices {
  return { model: s.model, blocks: s.blocks, hasher: s.hasher, blockSize: s.settings.blockSize };
}
