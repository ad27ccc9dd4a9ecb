// S3 tag sets (object and bucket tags): AWS's rules for a tag, the <Tagging> document that
// PutObjectTagging and PutBucketTagging send, and the one GetObjectTagging and GetBucketTagging
// answer. The caller gives the limit on tags per set (10 on an object, 50 on a bucket).
import { S3Error } from "./errors";
import { child, children, parseXml, xmlDocument } from "./xml";

/** Key and value pairs, in the order they were given; keys are unique. */
export type TagSet = [string, string][];

/** AWS's bounds on a tag key and value, in Unicode characters. */
export const TAG_KEY_MAX = 128;
export const TAG_VALUE_MAX = 256;
/** What AWS allows in a key or value: letters, digits, white space and + - = . _ : / @. */
const TAG_CHARS = /^[\p{L}\p{M}\p{N}\p{Z}\s+\-=._:/@]*$/u;
/** Keys AWS reserves for its own tags. */
const RESERVED_PREFIX = "aws:";

function characters(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Refuses a set AWS would refuse: too many tags, a bad key or value, a key given twice. */
export function validateTags(tags: TagSet, maxTags: number): void {
  if (tags.length > maxTags) throw new S3Error("BadRequest", `A tag set cannot hold more than ${maxTags} tags`);
  const keys = new Set<string>();
  for (const [key, value] of tags) {
    const keyLength = characters(key);
    if (keyLength === 0) throw new S3Error("InvalidTag", "The TagKey you have provided is empty");
    if (keyLength > TAG_KEY_MAX) throw new S3Error("InvalidTag", `The TagKey you have provided is too long, max ${TAG_KEY_MAX}`);
    if (characters(value) > TAG_VALUE_MAX) throw new S3Error("InvalidTag", `The TagValue you have provided is too long, max ${TAG_VALUE_MAX}`);
    if (!TAG_CHARS.test(key)) throw new S3Error("InvalidTag", "The TagKey you have provided is invalid");
    if (!TAG_CHARS.test(value)) throw new S3Error("InvalidTag", "The TagValue you have provided is invalid");
    if (key.toLowerCase().startsWith(RESERVED_PREFIX)) throw new S3Error("InvalidTag", `Your TagKey cannot be prefixed with ${RESERVED_PREFIX}`);
    if (keys.has(key)) throw new S3Error("InvalidTag", "Cannot provide multiple Tags with the same key");
    keys.add(key);
  }
}

/** Parses and checks a <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging> document. */
export function parseTaggingXml(text: string, maxTags: number): TagSet {
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: a Tagging document is required");
  const doc = parseXml(text);
  if (doc.name !== "Tagging") throw new S3Error("MalformedXML", `Expected a Tagging document, got ${doc.name}`);
  const tagSet = child(doc, "TagSet");
  if (!tagSet) throw new S3Error("MalformedXML", "A Tagging document needs a TagSet");
  const tags = children(tagSet, "Tag").map((tag): [string, string] => {
    const key = child(tag, "Key");
    const value = child(tag, "Value");
    if (!key || !value) throw new S3Error("MalformedXML", "Each Tag needs a Key and a Value");
    return [key.text, value.text];
  });
  validateTags(tags, maxTags);
  return tags;
}

/** The <Tagging> document of a tag set (an empty <TagSet/> when there are none). */
export function taggingXml(tags: TagSet): string {
  return xmlDocument("Tagging", { TagSet: { Tag: tags.map(([Key, Value]) => ({ Key, Value })) } });
}
