// XML for the S3 API: a writer for response bodies and a small, bounded parser for the
// request bodies clients send (CompleteMultipartUpload, Delete, CreateBucketConfiguration,
// website/CORS/lifecycle configurations). Neither side knows any S3 schema; handlers do.
//
// Characters XML 1.0 cannot carry (C0 controls other than TAB/LF/CR, U+FFFE, U+FFFF) can
// still appear in object keys. Like AWS S3, the writer emits them as numeric references
// (`&#x1;`): the listing stays lossless, and clients that need strictly well-formed XML
// ask for `encoding-type=url`, as AWS documents. For the same reason the parser accepts
// such references back (AWS refuses them in a Delete body, which leaves those keys
// undeletable in bulk). Lone UTF-16 surrogates have no UTF-8 form and become U+FFFD.

import { S3Error } from "./errors";

export const S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/";
export const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

/** Largest XML request body accepted, in UTF-16 code units (the caller bounds bytes too). */
export const MAX_XML_BODY = 2 * 1024 * 1024;
/** Deepest element nesting accepted; S3 documents nest at most a handful of levels. */
export const MAX_XML_DEPTH = 32;

// ---------------------------------------------------------------------------------------
// Writer

/** Element content: objects become child elements in insertion order, an array under a
 * tag repeats that element, null/undefined are omitted, scalars become escaped text. */
export type XmlNode =
  | string
  | number
  | boolean
  | Date
  | null
  | undefined
  | XmlNode[]
  | XmlWithAttrs
  | { [tag: string]: XmlNode };

/** An element that carries attributes, e.g. `<Grantee xsi:type="CanonicalUser">`. */
export class XmlWithAttrs {
  constructor(
    readonly attrs: Record<string, string | undefined>,
    readonly content: XmlNode,
  ) {}
}

export function xmlAttrs(attrs: Record<string, string | undefined>, content: XmlNode): XmlWithAttrs {
  return new XmlWithAttrs(attrs, content);
}

// TAB, LF and CR are escaped too: a parser turns a raw CR into LF, and raw TAB/LF in an
// attribute into spaces, so only a reference survives the round trip. In /u mode the
// surrogate class matches lone surrogates only, never a valid pair.
const NEEDS_ESCAPE = /[&<>"'\u0000-\u001F\uFFFE\uFFFF]|[\uD800-\uDFFF]/u;
const ESCAPE_ALL = /[&<>"'\u0000-\u001F\uFFFE\uFFFF]|[\uD800-\uDFFF]/gu;
const NAMED_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
};

function escapeChar(c: string): string {
  const named = NAMED_ESCAPES[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  if (code >= 0xd800 && code <= 0xdfff) return "\uFFFD";
  return `&#x${code.toString(16).toUpperCase()};`;
}

/** Escapes a string for XML text or a quoted attribute value. */
export function xmlEscape(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(ESCAPE_ALL, escapeChar) : s;
}

function scalarText(v: string | number | boolean | Date): string {
  if (typeof v === "string") return xmlEscape(v);
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "number" && !Number.isFinite(v)) {
    throw new TypeError(`cannot write non-finite number ${v} as XML`);
  }
  return String(v);
}

function writeAttrs(attrs: Record<string, string | undefined>, out: string[]): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined) out.push(" ", name, '="', xmlEscape(value), '"');
  }
}

function writeContent(node: XmlNode, out: string[]): void {
  if (node === null || node === undefined) return;
  if (Array.isArray(node)) {
    for (const item of node) writeContent(item, out);
  } else if (node instanceof XmlWithAttrs) {
    throw new TypeError("xmlAttrs() must be the value of a tag");
  } else if (typeof node === "object" && !(node instanceof Date)) {
    for (const [tag, value] of Object.entries(node)) writeElement(tag, value, out);
  } else {
    out.push(scalarText(node));
  }
}

function writeElement(tag: string, node: XmlNode, out: string[]): void {
  if (node === null || node === undefined) return;
  if (Array.isArray(node)) {
    for (const item of node) writeElement(tag, item, out);
    return;
  }
  out.push("<", tag);
  if (node instanceof XmlWithAttrs) {
    writeAttrs(node.attrs, out);
    out.push(">");
    writeContent(node.content, out);
  } else {
    out.push(">");
    writeContent(node, out);
  }
  out.push("</", tag, ">");
}

/** A complete XML document. The root carries the S3 namespace unless `attrs` overrides
 * it (pass `{ xmlns: undefined }` to drop it). */
export function xmlDocument(
  rootName: string,
  children: XmlNode,
  attrs: Record<string, string | undefined> = {},
): string {
  const out: string[] = [XML_DECLARATION, "<", rootName];
  writeAttrs({ xmlns: S3_XMLNS, ...attrs }, out);
  out.push(">");
  writeContent(children, out);
  out.push("</", rootName, ">");
  return out.join("");
}

// ---------------------------------------------------------------------------------------
// Parser

export interface XmlElement {
  /** Local name: any namespace prefix is stripped. */
  name: string;
  /** Attributes by local name; namespace declarations (xmlns, xmlns:*) are dropped. */
  attrs: Record<string, string>;
  children: XmlElement[];
  /** The element's own text and CDATA, entity-decoded. Kept verbatim (S3 keys may begin
   * or end with spaces), except that whitespace between child elements is dropped. */
  text: string;
}

export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

export function children(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

export function childText(el: XmlElement, name: string): string | undefined {
  return child(el, name)?.text;
}

const MALFORMED_MESSAGE = "The XML you provided was not well-formed or did not validate against our published schema";

// Close to the XML Name production; exotic name characters are let through, since
// element names are only ever compared against known S3 tags.
const NAME = /[A-Za-z_:\u00C0-\uFFFF][\w.\-:\u00B7-\uFFFF]*/y;
const WHITESPACE = /[ \t\n]*/y;
const ENTITY = /&(?:#x([0-9A-Fa-f]{1,6})|#([0-9]{1,7})|(amp|lt|gt|quot|apos));/y;
const ONLY_WHITESPACE = /^[ \t\n]*$/;
const NAMED_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
const MAX_CODE_POINT = 0x10ffff;

interface OpenElement {
  el: XmlElement;
  qname: string;
}

class XmlParser {
  private pos = 0;

  constructor(private readonly src: string) {}

  private fail(what: string): never {
    throw new S3Error("MalformedXML", `${MALFORMED_MESSAGE}: ${what} at offset ${this.pos}`);
  }

  private startsWith(s: string): boolean {
    return this.src.startsWith(s, this.pos);
  }

  private skipWhitespace(): boolean {
    WHITESPACE.lastIndex = this.pos;
    WHITESPACE.exec(this.src);
    const moved = WHITESPACE.lastIndex > this.pos;
    this.pos = WHITESPACE.lastIndex;
    return moved;
  }

  private name(): string {
    NAME.lastIndex = this.pos;
    const m = NAME.exec(this.src);
    if (!m) this.fail("expected a name");
    const name = m[0];
    const colon = name.indexOf(":");
    if (colon === 0 || colon === name.length - 1 || name.indexOf(":", colon + 1) !== -1) {
      this.fail(`invalid qualified name "${name}"`);
    }
    this.pos = NAME.lastIndex;
    return name;
  }

  /** Moves past `terminator`, which must occur; returns the text before it. */
  private until(terminator: string, what: string): string {
    const end = this.src.indexOf(terminator, this.pos);
    if (end === -1) this.fail(`unterminated ${what}`);
    const body = this.src.slice(this.pos, end);
    this.pos = end + terminator.length;
    return body;
  }

  private decode(raw: string): string {
    if (!raw.includes("&")) return raw;
    let out = "";
    let from = 0;
    for (let amp = raw.indexOf("&"); amp !== -1; amp = raw.indexOf("&", from)) {
      out += raw.slice(from, amp);
      ENTITY.lastIndex = amp;
      const m = ENTITY.exec(raw);
      if (!m) this.fail("invalid entity reference");
      if (m[3] !== undefined) {
        out += NAMED_ENTITIES[m[3]];
      } else {
        const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
        if (cp === 0 || cp > MAX_CODE_POINT || (cp >= 0xd800 && cp <= 0xdfff)) {
          this.fail(`invalid character reference ${m[0]}`);
        }
        out += String.fromCodePoint(cp);
      }
      from = ENTITY.lastIndex;
    }
    return out + raw.slice(from);
  }

  /** Comments, processing instructions and whitespace allowed around the root element. */
  private misc(): void {
    for (;;) {
      this.skipWhitespace();
      if (this.startsWith("<!--")) {
        this.pos += 4;
        this.until("-->", "comment");
      } else if (this.startsWith("<?")) {
        this.processingInstruction();
      } else if (this.startsWith("<!")) {
        this.fail("DTDs and declarations are not accepted");
      } else {
        return;
      }
    }
  }

  private processingInstruction(): void {
    this.pos += 2;
    const target = this.name();
    if (target.toLowerCase() === "xml") this.fail("misplaced XML declaration");
    this.until("?>", "processing instruction");
  }

  /** Parses `<name attr="v" ...>` or `<name .../>` with `pos` on the `<`. */
  private startTag(): { open: OpenElement; selfClosing: boolean } {
    this.pos++;
    const qname = this.name();
    const attrs: Record<string, string> = Object.create(null);
    const seen = new Set<string>();
    for (;;) {
      const spaced = this.skipWhitespace();
      if (this.startsWith("/>")) {
        this.pos += 2;
        return { open: { el: element(qname, attrs), qname }, selfClosing: true };
      }
      if (this.startsWith(">")) {
        this.pos++;
        return { open: { el: element(qname, attrs), qname }, selfClosing: false };
      }
      if (!spaced) this.fail(`expected whitespace, ">" or "/>" in <${qname}>`);
      const attrName = this.name();
      if (seen.has(attrName)) this.fail(`duplicate attribute "${attrName}"`);
      seen.add(attrName);
      this.skipWhitespace();
      if (!this.startsWith("=")) this.fail(`expected "=" after attribute "${attrName}"`);
      this.pos++;
      this.skipWhitespace();
      const quote = this.src[this.pos];
      if (quote !== '"' && quote !== "'") this.fail(`unquoted value for attribute "${attrName}"`);
      this.pos++;
      const raw = this.until(quote, "attribute value");
      if (raw.includes("<")) this.fail(`"<" in the value of attribute "${attrName}"`);
      if (attrName === "xmlns" || attrName.startsWith("xmlns:")) continue;
      // XML attribute-value normalisation: literal TAB and LF read as spaces.
      attrs[localName(attrName)] = this.decode(raw.replace(/[\t\n]/g, " "));
    }
  }

  parse(): XmlElement {
    if (this.startsWith("\uFEFF")) this.pos++;
    if (/^<\?xml[ \t\n]/.test(this.src.slice(this.pos, this.pos + 6))) {
      this.pos += 5;
      this.until("?>", "XML declaration");
    }
    this.misc();
    if (!this.startsWith("<")) this.fail("expected the root element");
    const root = this.element();
    this.misc();
    if (this.pos !== this.src.length) this.fail("content after the root element");
    return root;
  }

  /** Parses one element and everything inside it, iteratively so depth costs no stack. */
  private element(): XmlElement {
    const first = this.startTag();
    if (first.selfClosing) return first.open.el;
    const stack: OpenElement[] = [first.open];
    for (;;) {
      const top = stack[stack.length - 1]!;
      const lt = this.src.indexOf("<", this.pos);
      if (lt === -1) {
        this.pos = this.src.length;
        this.fail(`unclosed element <${top.qname}>`);
      }
      if (lt > this.pos) top.el.text += this.decode(this.src.slice(this.pos, lt));
      this.pos = lt;
      if (this.startsWith("</")) {
        this.pos += 2;
        const qname = this.name();
        this.skipWhitespace();
        if (!this.startsWith(">")) this.fail(`expected ">" to close </${qname}`);
        if (qname !== top.qname) this.fail(`</${qname}> does not close <${top.qname}>`);
        this.pos++;
        stack.pop();
        if (top.el.children.length > 0 && ONLY_WHITESPACE.test(top.el.text)) top.el.text = "";
        if (stack.length === 0) return top.el;
      } else if (this.startsWith("<!--")) {
        this.pos += 4;
        this.until("-->", "comment");
      } else if (this.startsWith("<![CDATA[")) {
        this.pos += 9;
        top.el.text += this.until("]]>", "CDATA section");
      } else if (this.startsWith("<?")) {
        this.processingInstruction();
      } else if (this.startsWith("<!")) {
        this.fail("DTDs and declarations are not accepted");
      } else {
        if (stack.length >= MAX_XML_DEPTH) this.fail(`elements nested deeper than ${MAX_XML_DEPTH}`);
        const next = this.startTag();
        top.el.children.push(next.open.el);
        if (!next.selfClosing) stack.push(next.open);
      }
    }
  }
}

function localName(qname: string): string {
  return qname.slice(qname.indexOf(":") + 1);
}

function element(qname: string, attrs: Record<string, string>): XmlElement {
  return { name: localName(qname), attrs, children: [], text: "" };
}

/** Parses an S3 request body. Throws S3Error MalformedXML on anything not well-formed,
 * and MaxMessageLengthExceeded past MAX_XML_BODY. */
export function parseXml(text: string): XmlElement {
  if (text.length > MAX_XML_BODY) {
    throw new S3Error("MaxMessageLengthExceeded", `XML request bodies are limited to ${MAX_XML_BODY / (1024 * 1024)} MiB`);
  }
  // XML end-of-line handling: literal CRLF and CR read as LF (a CR in a key arrives as &#xD;).
  return new XmlParser(text.replace(/\r\n?/g, "\n")).parse();
}
