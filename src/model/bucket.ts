// Buckets (full-copy table): identity, deletion flag, per-key permissions, and the bucket's
// settings (website, CORS, quotas, lifecycle, tags), each a last-writer-wins register.
import type { TableSchema } from "../table/schema";
import { mergePermissions, mergeRecords, mergeLww, type Lww, type Permissions } from "./crdt";

export interface WebsiteConfig {
  /** Appended to a path that ends in "/" (S3's IndexDocument Suffix), e.g. "index.html". */
  indexDocument: string;
  /** Key of the object served, with the original status, for a 4xx on GET. */
  errorDocument: string | null;
  /** S3's RoutingRules, in order. Absent (no rules) in entries written before they existed. */
  routingRules?: WebsiteRoutingRule[];
  /**
   * S3's RedirectAllRequestsTo: every request is sent to this host (same path), and nothing of
   * the bucket is served; the documents and rules are then unused.
   */
  redirectAllRequestsTo?: { hostName: string; protocol: "http" | "https" | null };
}

/** A redirect the web endpoint answers instead of an object, as S3's RoutingRule. */
export interface WebsiteRoutingRule {
  /** null: applies to every request. */
  condition: {
    /** The requested key starts with this (null: any key). */
    keyPrefixEquals: string | null;
    /** Applies only once the object lookup failed with this status (null: before any lookup). */
    httpErrorCodeReturnedEquals: number | null;
  } | null;
  redirect: {
    protocol: "http" | "https" | null;
    /** null: the request's own host (a relative redirect). */
    hostName: string | null;
    /** Replaces the matched prefix (exclusive with replaceKeyWith). */
    replaceKeyPrefixWith: string | null;
    replaceKeyWith: string | null;
    /** 301 (S3's default), 302, 303, 307 or 308. */
    httpRedirectCode: number | null;
  };
}

/** AWS's limit on routing rules per website configuration. */
export const WEBSITE_ROUTING_RULES_MAX = 50;
const REDIRECT_CODES = new Set([301, 302, 303, 307, 308]);
/** A redirect's host (and port): it goes out in a Location header as it is. */
const HOST_NAME = /^[a-z0-9.-]+(:\d+)?$/i;

function routingRuleProblem(r: WebsiteRoutingRule): string | undefined {
  const { redirect, condition } = r;
  if (redirect.hostName !== null && !HOST_NAME.test(redirect.hostName)) return `${JSON.stringify(redirect.hostName)} is not a host name`;
  if (redirect.replaceKeyPrefixWith !== null && redirect.replaceKeyWith !== null) return "A Redirect may have ReplaceKeyPrefixWith or ReplaceKeyWith, not both";
  if (redirect.httpRedirectCode !== null && !REDIRECT_CODES.has(redirect.httpRedirectCode)) return `HttpRedirectCode ${redirect.httpRedirectCode} is not a redirect (301, 302, 303, 307 or 308)`;
  if (Object.values(redirect).every((v) => v === null)) return "A Redirect needs at least one element";
  const code = condition?.httpErrorCodeReturnedEquals;
  if (code !== null && code !== undefined && (code < 400 || code > 599)) return "HttpErrorCodeReturnedEquals must be a 4xx or 5xx status";
  if (condition && condition.keyPrefixEquals === null && condition.httpErrorCodeReturnedEquals === null) return "A Condition needs KeyPrefixEquals or HttpErrorCodeReturnedEquals";
  return undefined;
}

/** One CORS rule, as S3's CORSRule; origins and headers may hold "*" wildcards. */
export interface CorsRule {
  id: string | null;
  allowedOrigins: string[];
  /** GET, PUT, POST, DELETE or HEAD. */
  allowedMethods: string[];
  /** Lower case. */
  allowedHeaders: string[];
  exposeHeaders: string[];
  maxAgeSeconds: number | null;
}

/** S3 tags, (key, value) in the order written; keys are unique. */
export type TagSet = [string, string][];

/** When objects a lifecycle rule matches expire: days after their last write, or from a date. */
export type LifecycleExpiration = { days: number } | { date: string };

/**
 * How a rule's document named the objects it applies to, so that it reads back as written:
 * "prefix" the legacy `<Rule><Prefix>`; "filter" a `<Filter>` holding its one condition
 * directly (or none: `<Filter/>`); "and" a `<Filter><And>`; "none" neither (every object).
 */
export type LifecycleFilterSyntax = "prefix" | "filter" | "and" | "none";

/** What a lifecycle rule applies to, as S3's Filter: every condition must hold. */
export interface LifecycleFilter {
  /** Key prefix ("" for all). */
  prefix: string;
  /** Object size bounds (exclusive). */
  sizeGreaterThan: number | null;
  sizeLessThan: number | null;
  /** Tags an object must all carry. Absent in rules stored before tag filters existed. */
  tags?: TagSet;
  /** Absent in rules stored before it was kept: read back as a Filter. */
  syntax?: LifecycleFilterSyntax;
  /** The Filter (or its And) held a `<Prefix>` element, possibly empty. */
  prefixElement?: boolean;
}

/** One lifecycle rule, as S3's (the subset Garage has): expiration and stale upload cleanup. */
export interface LifecycleRule {
  /** null only in rules stored before Bunker named unnamed rules (as AWS does). */
  id: string | null;
  enabled: boolean;
  filter: LifecycleFilter;
  expiration: LifecycleExpiration | null;
  /**
   * S3's Expiration/ExpiredObjectDeleteMarker as written (absent: not written). Bunker keeps no
   * noncurrent versions and lists no delete markers, so there is never one left to remove.
   */
  expiredObjectDeleteMarker?: boolean;
  /** Multipart uploads still open this many days after they began are aborted. */
  abortIncompleteUploadDays: number | null;
}

/** Limits on a bucket's contents (null: no limit), checked on writes against its counts. */
export interface BucketQuotas {
  /** Total bytes of the visible objects. */
  maxSize: number | null;
  maxObjects: number | null;
}

export const NO_QUOTAS: BucketQuotas = { maxSize: null, maxObjects: null };

/** Longest index or error document name, as S3 keys. */
export const WEBSITE_DOCUMENT_MAX_BYTES = 1024;

/** The reason quotas are refused, or undefined: each limit is null or a non-negative integer. */
export function quotasProblem(q: BucketQuotas): string | undefined {
  for (const [name, v] of Object.entries(q)) {
    if (v !== null && (!Number.isSafeInteger(v) || v < 0)) return `${name} must be a non-negative integer or null (got ${v})`;
  }
  return undefined;
}

/** S3's rules: the index suffix is non-empty and has no "/"; the error document is a key.
 * Returns the reason a config is refused, or undefined when it is valid. */
export function websiteConfigProblem(w: WebsiteConfig): string | undefined {
  if (w.indexDocument === "" || w.indexDocument.includes("/"))
    return "The index document suffix must be non-empty and may not contain a slash";
  if (Buffer.byteLength(w.indexDocument) > WEBSITE_DOCUMENT_MAX_BYTES || (w.errorDocument !== null && Buffer.byteLength(w.errorDocument) > WEBSITE_DOCUMENT_MAX_BYTES))
    return `Website document names are at most ${WEBSITE_DOCUMENT_MAX_BYTES} bytes`;
  if (w.errorDocument === "") return "The error document key may not be empty";
  if (w.redirectAllRequestsTo && !HOST_NAME.test(w.redirectAllRequestsTo.hostName)) return `${JSON.stringify(w.redirectAllRequestsTo.hostName)} is not a host name`;
  const rules = w.routingRules ?? [];
  if (rules.length > WEBSITE_ROUTING_RULES_MAX) return `A website configuration may have at most ${WEBSITE_ROUTING_RULES_MAX} routing rules`;
  for (const r of rules) {
    const problem = routingRuleProblem(r);
    if (problem) return problem;
  }
  return undefined;
}

export interface BucketEntry {
  id: string;
  created: number;
  deleted: boolean;
  /** accessKeyId -> permissions */
  keys: Record<string, Permissions>;
  website: Lww<WebsiteConfig | null>;
  /** CORS rules (null: none). Absent in entries written before CORS existed. */
  cors?: Lww<CorsRule[] | null>;
  /** Absent in entries written before quotas existed. */
  quotas?: Lww<BucketQuotas>;
  /** Lifecycle rules (null: none). Absent in entries written before lifecycle existed. */
  lifecycle?: Lww<LifecycleRule[] | null>;
  /** The bucket's tags (null: none). Absent in entries written before bucket tags existed. */
  tags?: Lww<TagSet | null>;
}

const NO_CORS: Lww<CorsRule[] | null> = { ts: 0, v: null };
const NO_QUOTAS_LWW: Lww<BucketQuotas> = { ts: 0, v: NO_QUOTAS };
const NO_LIFECYCLE: Lww<LifecycleRule[] | null> = { ts: 0, v: null };
const NO_TAGS: Lww<TagSet | null> = { ts: 0, v: null };

export const bucketSchema: TableSchema<BucketEntry> = {
  name: "bucket",
  replication: "full",
  partitionKey: () => "",
  sortKey: (b) => b.id,
  merge(a, b) {
    const deleted = a.deleted || b.deleted;
    return {
      id: a.id,
      created: Math.min(a.created, b.created),
      deleted,
      // A deleted bucket absorbs everything: no permission can resurrect it.
      keys: deleted ? {} : mergeRecords(a.keys, b.keys, mergePermissions),
      website: deleted ? { ts: Math.max(a.website.ts, b.website.ts), v: null } : mergeLww(a.website, b.website),
      cors: deleted ? { ts: Math.max(a.cors?.ts ?? 0, b.cors?.ts ?? 0), v: null } : mergeLww(a.cors ?? NO_CORS, b.cors ?? NO_CORS),
      quotas: deleted ? { ts: Math.max(a.quotas?.ts ?? 0, b.quotas?.ts ?? 0), v: NO_QUOTAS } : mergeLww(a.quotas ?? NO_QUOTAS_LWW, b.quotas ?? NO_QUOTAS_LWW),
      lifecycle: deleted ? { ts: Math.max(a.lifecycle?.ts ?? 0, b.lifecycle?.ts ?? 0), v: null } : mergeLww(a.lifecycle ?? NO_LIFECYCLE, b.lifecycle ?? NO_LIFECYCLE),
      tags: deleted ? { ts: Math.max(a.tags?.ts ?? 0, b.tags?.ts ?? 0), v: null } : mergeLww(a.tags ?? NO_TAGS, b.tags ?? NO_TAGS),
    };
  },
};

/** Bucket names as S3 allows them (and Garage: no xn-- prefix, no -s3alias suffix). */
export function isValidBucketName(name: string): boolean {
  if (name.length < 3 || name.length > 63) return false;
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name)) return false;
  if (name.includes("..") || /^\d+\.\d+\.\d+\.\d+$/.test(name)) return false;
  if (name.startsWith("xn--") || name.includes(".xn--") || name.endsWith("-s3alias")) return false;
  return true;
}
