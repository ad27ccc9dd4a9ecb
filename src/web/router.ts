// The web endpoint ([s3_web], port 3902): serves buckets with website access to anyone,
// without signatures. The bucket comes from the Host header (`<bucket>.<root_domain>`, or the
// whole host name, so a bucket called `example.com` serves `example.com`); a path ending in
// "/" gets the bucket's index document; a 4xx on GET shows its error document.
// Objects are answered by the same code as S3 GetObject (Range, conditional requests), and
// the bucket's CORS rules apply as on the S3 endpoint (e.g. fonts used by another site).
import { Elysia } from "elysia";
import { visibleVersion } from "../model/object";
import { readObject } from "../model/pending";
import type { WebsiteConfig, WebsiteRoutingRule } from "../model/bucket";
import { MAX_KEY_BYTES } from "../util/limits";
import { logger } from "../util/log";
import { metrics, secondsSince } from "../util/metrics";
import { bucketOfHost, rawUrlOf } from "../api/http";
import { S3Error, toS3Error } from "../api/s3/errors";
import { objectResponse } from "../api/s3/get";
import { encryptedOnWebsite } from "../api/s3/sse-c";
import { addCorsHeaders, preflightResponse } from "../api/s3/cors";
import type { S3Services } from "../api/s3/context";
import { xmlEscape } from "../api/s3/xml";

const log = logger("web");

/** The web endpoint ignores S3's query parameters (partNumber, response-*): a page is a page. */
const NO_QUERY = new URLSearchParams();
const REDIRECT_HEADER = "x-amz-website-redirect-location";

export interface WebSettings {
  /** `[s3_web] root_domain`: `<bucket>.<root_domain>` serves `<bucket>`. */
  rootDomain?: string;
}


/** The object key a request path asks for: "/" and "/dir/" mean their index document. */
export function keyOfPath(path: string, indexDocument: string): string {
  const key = path.slice(1);
  return key === "" || key.endsWith("/") ? key + indexDocument : key;
}

function decodePath(rawPath: string): string {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new S3Error("InvalidArgument", "The path is not valid percent-encoded UTF-8");
  }
  if (!path.startsWith("/")) throw new S3Error("InvalidArgument", "The path must start with /");
  if (path.includes("\u0000")) throw new S3Error("InvalidArgument", "The path may not contain NUL");
  if (Buffer.byteLength(path) > MAX_KEY_BYTES) throw new S3Error("KeyTooLongError", "The path is too long");
  return path;
}

/** A small page for browsers; the S3 code and message also travel as headers, as AWS does. */
function errorPage(err: S3Error, isHead: boolean): Response {
  const headers: Record<string, string> = { "x-amz-error-code": err.code, "x-amz-error-message": err.message.replace(/[^\x20-\x7e]/g, "?"), ...err.headers };
  if (isHead || err.status === 304) return new Response(null, { status: err.status, headers });
  headers["content-type"] = "text/html; charset=utf-8";
  const title = `${err.status} ${err.code}`;
  const body = `<!DOCTYPE html>\n<html><head><title>${xmlEscape(title)}</title></head><body><h1>${xmlEscape(title)}</h1><p>${xmlEscape(err.message)}</p></body></html>\n`;
  return new Response(body, { status: err.status, headers });
}


/** The bucket's error document with the original status, or undefined if it has none. */
async function errorDocumentResponse(services: S3Services, bucketId: string, website: WebsiteConfig, status: number): Promise<Response | undefined> {
  if (website.errorDocument === null) return undefined;
  const version = visibleVersion(await readObject(services, bucketId, website.errorDocument));
  // An encrypted error document is never served: the plain error answer goes out instead.
  if (!version || version.state.data.meta.encryption) return undefined;
  // No conditions and no Range: the client asked for another object, not this one.
  const page = await objectResponse(services, version, { headers: new Headers(), query: NO_QUERY }, false);
  return new Response(page.body, { status, headers: page.headers });
}

async function serve(request: Request, services: S3Services, settings: WebSettings, rawPath: string, isHead: boolean): Promise<Response> {
  const name = bucketOfHost(request.headers.get("host"), settings.rootDomain, true);
  const bucket = name === undefined ? undefined : services.model.resolveBucket(name);
  const website = bucket?.website.v;
  if (!bucket || !website) throw new S3Error("NoSuchBucket", `No website is published at ${name ?? "this address"}`);
  const cors = bucket.cors?.v ?? null;
  if (request.method === "OPTIONS") {
    try {
      return preflightResponse(cors, request.headers);
    } catch (err) {
      return errorPage(toS3Error(err), true);
    }
  }
  const all = website.redirectAllRequestsTo;
  if (all) {
    // The same path (and query) on the other host: S3's RedirectAllRequestsTo.
    const raw = rawUrlOf(request);
    return new Response(null, { status: 301, headers: { location: `${all.protocol ?? "http"}://${all.hostName}${raw.startsWith("/") ? raw : "/"}` } });
  }
  return addCorsHeaders(await servePage(request, services, bucket.id, website, rawPath, isHead), cors, request.headers, request.method);
}

/**
 * The redirect of the first routing rule that applies to `key` (the requested key, before the
 * index document), as S3 evaluates them: rules without an error condition before the object is
 * looked up (errorStatus undefined), rules for an error status once the lookup failed with it.
 */
export function routingRedirect(rules: readonly WebsiteRoutingRule[] | undefined, key: string, errorStatus: number | undefined, host: string | null): Response | undefined {
  for (const { condition, redirect } of rules ?? []) {
    const onError = condition?.httpErrorCodeReturnedEquals ?? null;
    if (errorStatus === undefined ? onError !== null : onError !== errorStatus) continue;
    const prefix = condition?.keyPrefixEquals ?? "";
    if (!key.startsWith(prefix)) continue;
    const newKey = redirect.replaceKeyWith ?? (redirect.replaceKeyPrefixWith !== null ? redirect.replaceKeyPrefixWith + key.slice(prefix.length) : key);
    const path = "/" + newKey.split("/").map(encodeURIComponent).join("/");
    const toHost = redirect.hostName ?? (redirect.protocol !== null ? host : null);
    const location = toHost ? `${redirect.protocol ?? "http"}://${toHost}${path}` : path;
    return new Response(null, { status: redirect.httpRedirectCode ?? 301, headers: { location } });
  }
  return undefined;
}

async function servePage(request: Request, services: S3Services, bucketId: string, website: WebsiteConfig, rawPath: string, isHead: boolean): Promise<Response> {
  let requested: string | undefined;
  try {
    const path = decodePath(rawPath);
    requested = path.slice(1);
    const early = routingRedirect(website.routingRules, requested, undefined, request.headers.get("host"));
    if (early) return early;
    const key = keyOfPath(path, website.indexDocument);
    const version = visibleVersion(await readObject(services, bucketId, key));
    if (!version) {
      // "/docs" where "docs/index.html" exists: send the browser to "/docs/" so that the
      // page's relative links resolve inside the directory.
      // The Location is built from the decoded key, re-encoded (a raw "/\evil.com" would read
      // as another site to the browser), and never for a key starting with "/" ("//evil.com").
      if (!rawPath.endsWith("/") && !key.startsWith("/") && visibleVersion(await readObject(services, bucketId, `${key}/${website.indexDocument}`)))
        return new Response(null, { status: 302, headers: { location: `/${key.split("/").map(encodeURIComponent).join("/")}/` } });
      throw new S3Error("NoSuchKey", `The specified key does not exist: ${key}`);
    }
    const redirect = version.state.data.meta.headers.find(([n]) => n === REDIRECT_HEADER);
    if (redirect) return new Response(null, { status: 301, headers: { location: redirect[1] } });
    // Anonymous readers cannot give an SSE-C key: an encrypted object is never served here.
    if (version.state.data.meta.encryption) throw encryptedOnWebsite();
    return await objectResponse(services, version, { headers: request.headers, query: NO_QUERY }, isHead);
  } catch (err) {
    const s3err = toS3Error(err);
    const late = requested === undefined ? undefined : routingRedirect(website.routingRules, requested, s3err.status, request.headers.get("host"));
    if (late) return late;
    if (!isHead && request.method === "GET" && s3err.status >= 400 && s3err.status < 500 && s3err.code !== "InvalidRange") {
      const page = await errorDocumentResponse(services, bucketId, website, s3err.status);
      if (page) return page;
    }
    return errorPage(s3err, isHead);
  }
}

const requestCounter = metrics.counter("web_request_counter", "Requests to the web endpoint, by method");
const errorCounter = metrics.counter("web_error_counter", "Web endpoint requests answered with an error status, by method and status");
const requestDuration = metrics.histogram("web_request_duration_seconds", "Time to answer a web endpoint request (until the response starts), by method");
const METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export async function handleWeb(request: Request, services: S3Services, settings: WebSettings): Promise<Response> {
  const startedNs = Bun.nanoseconds();
  const response = await answerWeb(request, services, settings);
  const labels = { method: METHODS.has(request.method) ? request.method : "other" };
  requestCounter.inc(labels);
  requestDuration.observe(labels, secondsSince(startedNs));
  if (response.status >= 400) errorCounter.inc({ ...labels, status_code: String(response.status) });
  return response;
}

async function answerWeb(request: Request, services: S3Services, settings: WebSettings): Promise<Response> {
  const isHead = request.method === "HEAD";
  if (request.method !== "GET" && !isHead && request.method !== "OPTIONS") {
    const err = new S3Error("MethodNotAllowed", "A website answers GET, HEAD and OPTIONS only", { allow: "GET, HEAD, OPTIONS" });
    return errorPage(err, false);
  }
  const raw = rawUrlOf(request);
  const qi = raw.indexOf("?");
  const rawPath = qi < 0 ? raw : raw.slice(0, qi);
  try {
    return await serve(request, services, settings, rawPath, isHead);
  } catch (err) {
    const s3err = toS3Error(err);
    if (s3err.status >= 500) log.warn(`${request.method} ${rawPath}: ${s3err.code} ${s3err.message}`);
    return errorPage(s3err, isHead);
  }
}

export function webApp(services: S3Services, settings: WebSettings) {
  const handler = ({ request }: { request: Request }) => handleWeb(request, services, settings);
  return new Elysia({ normalize: false })
    .all("/", handler, { parse: "none" })
    .all("/*", handler, { parse: "none" });
}
