// PutBucketWebsite, GetBucketWebsite, DeleteBucketWebsite: the switch that makes a bucket
// public on the web endpoint, with its index and error documents and routing rules (redirects).
// or a redirect of every request to another host (RedirectAllRequestsTo).
import { websiteConfigProblem, type WebsiteConfig, type WebsiteRoutingRule } from "../../model/bucket";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { parseDecimal } from "../../util/decimal";
import { child, children, childText, MAX_XML_BODY, parseXml, xmlDocument, type XmlElement, type XmlNode } from "./xml";

/** The status codes of routing rules: three digits (the model checks which ones). */
const STATUS_CODE_MAX = 999;

function optionalInt(el: XmlElement, name: string): number | null {
  const text = childText(el, name)?.trim();
  if (text === undefined) return null;
  const n = parseDecimal(text, 0, STATUS_CODE_MAX);
  if (n === undefined) throw new S3Error("InvalidArgument", `${name} must be an HTTP status code, got ${JSON.stringify(text)}`);
  return n;
}

function parseRoutingRule(el: XmlElement): WebsiteRoutingRule {
  const cond = child(el, "Condition");
  const redirect = child(el, "Redirect");
  if (!redirect) throw new S3Error("MalformedXML", "A RoutingRule needs a Redirect");
  const protocol = childText(redirect, "Protocol") ?? null;
  if (protocol !== null && protocol !== "http" && protocol !== "https") throw new S3Error("InvalidArgument", `Protocol must be http or https, got "${protocol}"`);
  return {
    condition: cond ? { keyPrefixEquals: childText(cond, "KeyPrefixEquals") ?? null, httpErrorCodeReturnedEquals: optionalInt(cond, "HttpErrorCodeReturnedEquals") } : null,
    redirect: {
      protocol,
      hostName: childText(redirect, "HostName") ?? null,
      replaceKeyPrefixWith: childText(redirect, "ReplaceKeyPrefixWith") ?? null,
      replaceKeyWith: childText(redirect, "ReplaceKeyWith") ?? null,
      httpRedirectCode: optionalInt(redirect, "HttpRedirectCode"),
    },
  };
}

function routingRuleXml(r: WebsiteRoutingRule): XmlNode {
  const c = r.condition;
  const d = r.redirect;
  return {
    Condition: c ? { KeyPrefixEquals: c.keyPrefixEquals ?? undefined, HttpErrorCodeReturnedEquals: c.httpErrorCodeReturnedEquals ?? undefined } : undefined,
    Redirect: {
      Protocol: d.protocol ?? undefined,
      HostName: d.hostName ?? undefined,
      ReplaceKeyPrefixWith: d.replaceKeyPrefixWith ?? undefined,
      ReplaceKeyWith: d.replaceKeyWith ?? undefined,
      HttpRedirectCode: d.httpRedirectCode ?? undefined,
    },
  };
}

/** Parses a WebsiteConfiguration document; the model checks the names themselves. */
export function parseWebsiteConfiguration(text: string): WebsiteConfig {
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: a WebsiteConfiguration is required");
  const doc = parseXml(text);
  if (doc.name !== "WebsiteConfiguration") throw new S3Error("MalformedXML", `Expected a WebsiteConfiguration, got ${doc.name}`);
  const redirectAll = child(doc, "RedirectAllRequestsTo");
  if (redirectAll) {
    if (doc.children.length > 1) throw new S3Error("InvalidArgument", "RedirectAllRequestsTo may not be combined with other website settings");
    const hostName = childText(redirectAll, "HostName");
    if (!hostName) throw new S3Error("InvalidArgument", "RedirectAllRequestsTo needs a HostName");
    const protocol = childText(redirectAll, "Protocol") ?? null;
    if (protocol !== null && protocol !== "http" && protocol !== "https") throw new S3Error("InvalidArgument", `Protocol must be http or https, got "${protocol}"`);
    // The index document is never used while everything is redirected; S3's default is kept
    // so that the type stays one shape.
    const config: WebsiteConfig = { indexDocument: "index.html", errorDocument: null, redirectAllRequestsTo: { hostName, protocol } };
    const problem = websiteConfigProblem(config);
    if (problem) throw new S3Error("InvalidArgument", problem);
    return config;
  }
  const indexEl = child(doc, "IndexDocument");
  const indexDocument = indexEl ? childText(indexEl, "Suffix") : undefined;
  if (indexDocument === undefined) throw new S3Error("InvalidArgument", "A website configuration must have an IndexDocument with a Suffix");
  const errorEl = child(doc, "ErrorDocument");
  const errorDocument = errorEl ? childText(errorEl, "Key") : undefined;
  if (errorEl && errorDocument === undefined) throw new S3Error("InvalidArgument", "An ErrorDocument must have a Key");
  const rulesEl = child(doc, "RoutingRules");
  const config: WebsiteConfig = { indexDocument, errorDocument: errorDocument ?? null };
  if (rulesEl) config.routingRules = children(rulesEl, "RoutingRule").map(parseRoutingRule);
  // Checked here as well as by the model, so a bad rule is a 400 naming it.
  const problem = websiteConfigProblem(config);
  if (problem) throw new S3Error("InvalidArgument", problem);
  return config;
}

export async function putBucketWebsite(r: BucketRequest): Promise<Response> {
  const config = parseWebsiteConfiguration(await readSmallBody(r, MAX_XML_BODY));
  await r.services.model.setWebsite(r.bucket, config);
  return new Response(null, { status: 200 });
}

export function getBucketWebsite(r: BucketRequest): Response {
  const config = r.bucket.website.v;
  if (!config) throw new S3Error("NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration");
  const all = config.redirectAllRequestsTo;
  if (all) return xmlResponse(xmlDocument("WebsiteConfiguration", { RedirectAllRequestsTo: { HostName: all.hostName, Protocol: all.protocol ?? undefined } }));
  return xmlResponse(
    xmlDocument("WebsiteConfiguration", {
      IndexDocument: { Suffix: config.indexDocument },
      ...(config.errorDocument !== null ? { ErrorDocument: { Key: config.errorDocument } } : {}),
      ...(config.routingRules?.length ? { RoutingRules: { RoutingRule: config.routingRules.map(routingRuleXml) } } : {}),
    }),
  );
}

export async function deleteBucketWebsite(r: BucketRequest): Promise<Response> {
  if (r.bucket.website.v !== null) await r.services.model.setWebsite(r.bucket, null);
  return new Response(null, { status: 204 });
}
