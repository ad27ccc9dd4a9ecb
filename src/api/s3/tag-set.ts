// S3 tag sets: the `<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>` document
// of bucket and object tagging, the `<Tag>` lists other documents carry (CreateBucket's
// `<Tags>`, lifecycle filters), and AWS's rules on tags: how many, how long, which characters,
// no `aws:` keys, no key twice. A document that does not fit the schema is MalformedXML; a
// tag that breaks a rule is InvalidTag.
import type { TagSet } from "../../model/bucket";
import { S3Error } from "./errors";
import { children, parseXml, xmlDocument, type XmlElement } from "./xml";

export type { TagSet };

/** AWS's limits: tags per bucket and per object. */
export const BUCKET_TAGS_MAX = 50;
export const OBJECT_TAGS_MAX = 10;
/** AWS's limits on a tag, in Unicode characters. */
export const TAG_KEY_MAX = 128;
export const TAG_VALUE_MAX = 256;
/** The characters AWS allows in tags: letters, digits, whitespace and + - = . _ : / @. */
const TAG_CHARACTERS = /^[\p{L}\p{M}\p{Z}\p{N}\s+\-=._:/@]*$/u;
/** Keys AWS keeps for its own tags. */
const RESERVED_KEY_PREFIX = "aws:";

/** A tag for an error message: control characters must not reach the error XML. */
function shown(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);
}

/** Throws InvalidTag unless `tags` keeps AWS's rules, at most `maxTags` of them. */
export function validateTags(tags: TagSet, maxTags: number): void {
  if (tags.length > maxTags) throw new S3Error("InvalidTag", `A tag set may have at most ${maxTags} tags (got ${tags.length})`);
  const keys = new Set<string>();
  for (const [key, value] of tags) {
    const keyLength = [...key].length;
    if (keyLength < 1 || keyLength > TAG_KEY_MAX) throw new S3Error("InvalidTag", `A tag key must be 1 to ${TAG_KEY_MAX} characters long (got ${keyLength})`);
    const valueLength = [...value].length;
    if (valueLength > TAG_VALUE_MAX) throw new S3Error("InvalidTag", `A tag value may be at most ${TAG_VALUE_MAX} characters long (got ${valueLength})`);
    if (!TAG_CHARACTERS.test(key) || !TAG_CHARACTERS.test(value))
      throw new S3Error("InvalidTag", `The tag ${shown(key)} has characters tags may not have (letters, digits, whitespace and + - = . _ : / @ only)`);
    if (key.toLowerCase().startsWith(RESERVED_KEY_PREFIX)) throw new S3Error("InvalidTag", `Tag keys starting with "${RESERVED_KEY_PREFIX}" are reserved for system tags`);
    if (keys.has(key)) throw new S3Error("InvalidTag", `Cannot provide multiple Tags with the same key (${shown(key)})`);
    keys.add(key);
  }
}

/** One `<Tag><Key>k</Key><Value>v</Value></Tag>`: exactly one Key and one Value, as the schema. */
export function parseTagElement(tag: XmlElement): [string, string] {
  const keys = children(tag, "Key");
  const values = children(tag, "Value");
  if (keys.length !== 1 || values.length !== 1) throw new S3Error("MalformedXML", "A Tag needs exactly one Key and one Value");
  return [keys[0]!.text, values[0]!.text];
}

/** The `<Tag>` children of `el`, checked against AWS's rules. */
export function parseTags(el: XmlElement, maxTags: number): TagSet {
  const tags = children(el, "Tag").map(parseTagElement);
  validateTags(tags, maxTags);
  return tags;
}

/** Parses and checks a `<Tagging>` document (an empty TagSet is no tags). */
export function parseTaggingXml(text: string, maxTags: number): TagSet {
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: a Tagging document is required");
  const doc = parseXml(text);
  if (doc.name !== "Tagging") throw new S3Error("MalformedXML", `Expected a Tagging document, got ${doc.name}`);
  const sets = children(doc, "TagSet");
  if (sets.length !== 1) throw new S3Error("MalformedXML", "A Tagging document needs exactly one TagSet");
  return parseTags(sets[0]!, maxTags);
}

/** The `<Tagging>` document of `tags`. */
export function taggingXml(tags: TagSet): string {
  // S3 keeps a tag set as a map and answers it sorted by key (s3-tests test_put_obj_with_tags).
  const sorted = [...tags].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return xmlDocument("Tagging", { TagSet: { Tag: sorted.map(([Key, Value]) => ({ Key, Value })) } });
}
