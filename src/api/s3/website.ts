// PutBucketWebsite, GetBucketWebsite, DeleteBucketWebsite: the switch that makes a bucket
// public on the web endpoint, with its index and error documents. Routing rules and
// RedirectAllRequestsTo are refused (501) rather than stored and ignored.
import type { WebsiteConfig } from "../../model/bucket";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { child, childText, MAX_XML_BODY, parseXml, xmlDocument } from "./xml";

/** Parses a WebsiteConfiguration document; the model checks the names themselves. */
export function parseWebsiteConfiguration(text: string): WebsiteConfig {
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: a WebsiteConfiguration is required");
  const doc = parseXml(text);
  if (doc.name !== "WebsiteConfiguration") throw new S3Error("MalformedXML", `Expected a WebsiteConfiguration, got ${doc.name}`);
  if (child(doc, "RedirectAllRequestsTo")) throw new S3Error("NotImplemented", "RedirectAllRequestsTo is not implemented by Bunker");
  if (child(doc, "RoutingRules")) throw new S3Error("NotImplemented", "RoutingRules are not implemented by Bunker");
  const indexEl = child(doc, "IndexDocument");
  const indexDocument = indexEl ? childText(indexEl, "Suffix") : undefined;
  if (indexDocument === undefined) throw new S3Error("InvalidArgument", "A website configuration must have an IndexDocument with a Suffix");
  const errorEl = child(doc, "ErrorDocument");
  const errorDocument = errorEl ? childText(errorEl, "Key") : undefined;
  if (errorEl && errorDocument === undefined) throw new S3Error("InvalidArgument", "An ErrorDocument must have a Key");
  return { indexDocument, errorDocument: errorDocument ?? null };
}

export async function putBucketWebsite(r: BucketRequest): Promise<Response> {
  const config = parseWebsiteConfiguration(await readSmallBody(r, MAX_XML_BODY));
  await r.services.model.setWebsite(r.bucket, config);
  return new Response(null, { status: 200 });
}

export function getBucketWebsite(r: BucketRequest): Response {
  const config = r.bucket.website.v;
  if (!config) throw new S3Error("NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration");
  return xmlResponse(
    xmlDocument("WebsiteConfiguration", {
      IndexDocument: { Suffix: config.indexDocument },
      ...(config.errorDocument !== null ? { ErrorDocument: { Key: config.errorDocument } } : {}),
    }),
  );
}

export async function deleteBucketWebsite(r: BucketRequest): Promise<Response> {
  if (r.bucket.website.v !== null) await r.services.model.setWebsite(r.bucket, null);
  return new Response(null, { status: 204 });
}
