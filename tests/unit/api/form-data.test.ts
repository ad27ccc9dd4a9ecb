// multipart/form-data reading for PostObject: every body is fed split in many ways (1 byte,
// 7 bytes, seeded random pieces, one chunk) and must give the same fields and file bytes; file
// data full of near-delimiters, quoting, preambles and epilogues, truncation anywhere, the
// limits, and a 20 MiB file streamed through without being held.
import { describe, expect, test } from "bun:test";
import { CryptoHasher } from "bun";
import { S3Error } from "../../../src/api/s3/errors";
import { MAX_FORM_FIELDS_BYTES, MAX_PART_HEADER_BYTES, readPostForm } from "../../../src/api/s3/form-data";
import { mulberry32 } from "../../helpers/random";

const enc = new TextEncoder();
const BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
const CT = `multipart/form-data; boundary=${BOUNDARY}`;

/** Deterministic PRNG, so random splits and data are reproducible. */
const prng = mulberry32;

function bytes(...parts: (string | Uint8Array)[]): Uint8Array {
  const arrays = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of arrays) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 256);
  return out;
}

interface Part {
  /** Header lines; defaults to a Content-Disposition with `name`. */
  headers?: string[];
  name?: string;
  data: string | Uint8Array;
}

interface BodyOptions {
  boundary?: string;
  preamble?: string;
  epilogue?: string;
}

/** A well-formed body: each part, then the closing delimiter. */
function formBody(parts: Part[], opts: BodyOptions = {}): Uint8Array {
  const b = opts.boundary ?? BOUNDARY;
  const out: (string | Uint8Array)[] = [];
  if (opts.preamble !== undefined) out.push(opts.preamble, "\r\n");
  for (const p of parts) {
    const headers = p.headers ?? [`Content-Disposition: form-data; name="${p.name}"`];
    out.push(`--${b}\r\n`, headers.join("\r\n"), "\r\n\r\n", p.data, "\r\n");
  }
  out.push(`--${b}--`);
  if (opts.epilogue !== undefined) out.push("\r\n", opts.epilogue);
  return bytes(...out);
}

const filePart = (data: string | Uint8Array, filename = "photo.jpg", type = "image/jpeg"): Part => ({
  headers: [`Content-Disposition: form-data; name="file"; filename="${filename}"`, `Content-Type: ${type}`],
  data,
});

/** A stream handing out `body` in pieces of the sizes given, only as fast as it is read. */
function streamOf(body: Uint8Array, size: () => number, events?: { ended: boolean; cancelled: boolean }): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (o >= body.length) {
          if (events) events.ended = true;
          c.close();
          return;
        }
        const n = Math.max(1, Math.min(size(), body.length - o));
        // A copy, so the reader cannot lean on one contiguous buffer.
        c.enqueue(body.slice(o, o + n));
        o += n;
      },
      cancel() {
        if (events) events.cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
}

const random = (seed: number, max: number) => () => {
  const r = prng(seed);
  return () => 1 + Math.floor(r() * max);
};

const SPLITS: [string, () => () => number][] = [
  ["1 byte", () => () => 1],
  ["7 bytes", () => () => 7],
  ["random small (seed 1)", random(1, 16)],
  ["random (seed 2)", random(2, 200)],
  ["random (seed 3)", random(3, 200)],
  ["random large (seed 4)", random(4, 5000)],
  ["one chunk", () => () => Number.MAX_SAFE_INTEGER],
];

interface Outcome {
  fields?: [string, string][];
  file?: { filename: string; contentType: string | null; hex: string; size: number };
  /** The error's code, and whether readPostForm or the file stream threw it. */
  error?: { code: string; during: "form" | "file"; message: string };
  /** The whole body was read (the stream reached its end). */
  ended?: boolean;
}

async function outcome(body: Uint8Array, size: () => number, contentType = CT): Promise<Outcome> {
  const events = { ended: false, cancelled: false };
  let during: "form" | "file" = "form";
  try {
    const { fields, file } = await readPostForm(streamOf(body, size, events), contentType);
    const result: Outcome = { fields: [...fields] };
    if (file) {
      during = "file";
      const chunks: Uint8Array[] = [];
      for await (const c of file.chunks) chunks.push(c);
      const data = bytes(...chunks);
      result.file = { filename: file.filename, contentType: file.contentType, hex: Buffer.from(data).toString("hex"), size: data.length };
    }
    result.ended = events.ended;
    return result;
  } catch (err) {
    if (!(err instanceof S3Error)) throw err;
    return { error: { code: err.code, during, message: err.message } };
  }
}

/** The outcome, checked to be the same however the body is split. */
async function parse(body: Uint8Array, contentType = CT): Promise<Outcome> {
  const results: Outcome[] = [];
  for (const [, split] of SPLITS) results.push(await outcome(body, split(), contentType));
  for (let i = 1; i < results.length; i++) {
    const label = SPLITS[i]![0];
    expect({ label, ...results[i] }).toEqual({ label, ...results[0]! });
  }
  return results[0]!;
}

const hex = (d: string | Uint8Array) => Buffer.from(typeof d === "string" ? enc.encode(d) : d).toString("hex");

/** Random binary data sprinkled with things that look like, but are not, the delimiter. */
function trickyData(): Uint8Array {
  const r = prng(99);
  const decoys = [
    "\r\n--",
    "\r\n-",
    "\r\n",
    "\r",
    "\r\r\n--",
    `--${BOUNDARY}`, // no CRLF before it: data
    `\n--${BOUNDARY}\n`, // bare LF: data
    `\r\n-${BOUNDARY}`,
    `\r\n--${BOUNDARY.slice(0, -1)}`,
    `\r\n--${BOUNDARY.slice(0, 10)}`,
    `\r\n--${BOUNDARY.slice(0, 1)}`,
    `\r\n--\r\n--${BOUNDARY.slice(0, 20)}`,
  ];
  const out: (string | Uint8Array)[] = [];
  for (let i = 0; i < 60; i++) {
    out.push(randomBytes(Math.floor(r() * 600), 1000 + i));
    out.push(decoys[i % decoys.length]!);
  }
  // Ends with a boundary prefix right before the real delimiter.
  out.push(`\r\n--${BOUNDARY.slice(0, 30)}`);
  return bytes(...out);
}

describe("readPostForm", () => {
  test("fields before the file, the file's bytes, name and type; later parts ignored", async () => {
    const data = trickyData();
    const body = formBody([
      { name: "key", data: "uploads/${filename}" },
      { name: "Policy", data: "eyJleHBpcmF0aW9uIjoi" },
      { name: "KEY", data: "ignored: the first value of a name wins" },
      { name: "x-amz-meta-note", data: "héllo wörld ✓" },
      { name: "empty", data: "" },
      filePart(data),
      { name: "after", data: "not read into fields" },
      { headers: ["X-No-Disposition: 1"], data: "ignored too, even without a name" },
    ]);
    const out = await parse(body);
    expect(out.error).toBeUndefined();
    expect(out.fields).toEqual([
      ["key", "uploads/${filename}"],
      ["policy", "eyJleHBpcmF0aW9uIjoi"],
      ["x-amz-meta-note", "héllo wörld ✓"],
      ["empty", ""],
    ]);
    expect(out.file).toEqual({ filename: "photo.jpg", contentType: "image/jpeg", hex: hex(data), size: data.length });
    expect(out.ended).toBe(true);
  });

  test("empty file, file part named in upper case, no content type", async () => {
    const body = formBody([{ name: "a", data: "1" }, { headers: ['Content-Disposition: form-data; name="FILE"'], data: "" }]);
    const out = await parse(body);
    expect(out.fields).toEqual([["a", "1"]]);
    expect(out.file).toEqual({ filename: "", contentType: null, hex: "", size: 0 });
  });

  test("quoted boundary, parameter names in any case, other parameters", async () => {
    const boundary = "weird:bound ary=?'()+_,-./";
    const body = formBody([{ name: "a", data: "x" }, filePart("content")], { boundary });
    const out = await parse(body, `Multipart/Form-Data; charset=utf-8; BOUNDARY="${boundary}"`);
    expect(out.fields).toEqual([["a", "x"]]);
    expect(out.file?.hex).toBe(hex("content"));
  });

  test("a boundary of 70 characters is accepted", async () => {
    const boundary = "b".repeat(70);
    const out = await parse(formBody([filePart("z")], { boundary }), `multipart/form-data; boundary=${boundary}`);
    expect(out.file?.hex).toBe(hex("z"));
  });

  test("preamble and epilogue are skipped", async () => {
    const body = formBody([{ name: "a", data: "1" }, filePart("data")], {
      preamble: `This is a preamble. --${BOUNDARY} without a CRLF before it is not a boundary.`,
      epilogue: `epilogue\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="b"\r\n\r\nnot a field\r\n`,
    });
    const out = await parse(body);
    expect(out.fields).toEqual([["a", "1"]]);
    expect(out.file?.hex).toBe(hex("data"));
    expect(out.ended).toBe(true);
  });

  test("padding after a boundary and folded headers are tolerated", async () => {
    const body = bytes(
      `--${BOUNDARY} \t\r\nContent-Disposition: form-data;\r\n name="a"\r\n\r\n1\r\n`,
      `--${BOUNDARY}  \r\ncontent-type: text/plain\r\ncontent-disposition: form-data; filename=notes.txt; name=file\r\n\r\nhi\r\n`,
      `--${BOUNDARY}--\r\n`,
    );
    const out = await parse(body);
    expect(out.fields).toEqual([["a", "1"]]);
    expect(out.file).toEqual({ filename: "notes.txt", contentType: "text/plain", hex: hex("hi"), size: 2 });
  });

  test("filenames: escapes, Windows paths, UTF-8, unquoted with spaces", async () => {
    const cases: [string, string][] = [
      ['filename="a\\"b\\\\c.txt"', 'a"b\\c.txt'],
      ['filename="C:\\dir\\x.txt"', "C:\\dir\\x.txt"],
      ['filename="résumé ✓.pdf"', "résumé ✓.pdf"],
      ["filename=my file.txt", "my file.txt"],
      ['filename="semi;colon=.txt"', "semi;colon=.txt"],
    ];
    for (const [param, filename] of cases) {
      const body = formBody([{ headers: [`Content-Disposition: form-data; name="file"; ${param}`], data: "x" }]);
      const out = await parse(body);
      expect(out.file?.filename).toBe(filename);
    }
  });

  test("no file part: the fields, after reading the whole body", async () => {
    const out = await parse(formBody([{ name: "key", data: "k" }, { name: "acl", data: "private" }], { epilogue: "bye" }));
    expect(out).toEqual({ fields: [["key", "k"], ["acl", "private"]], ended: true });
  });

  test("file data arrives before the body ends, holding back only a possible delimiter", async () => {
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
    ctl.enqueue(bytes(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n`));
    ctl.enqueue(bytes("x".repeat(1000)));
    const { file } = await readPostForm(stream, CT);
    const it = file!.chunks[Symbol.asyncIterator]();
    expect(Buffer.from((await it.next()).value!).toString()).toBe("x".repeat(1000));
    ctl.enqueue(bytes(`abc\r\n--${BOUNDARY.slice(0, 5)}`));
    expect(Buffer.from((await it.next()).value!).toString()).toBe("abc");
    ctl.enqueue(bytes(`\r\n--${BOUNDARY}--\r\n`));
    expect(Buffer.from((await it.next()).value!).toString()).toBe(`\r\n--${BOUNDARY.slice(0, 5)}`);
    const last = it.next();
    ctl.close();
    expect((await last).done).toBe(true);
  });

  test("stopping the file stream early cancels the body", async () => {
    const events = { ended: false, cancelled: false };
    const body = formBody([filePart(randomBytes(10_000, 5)), { name: "after", data: "x" }]);
    const { file } = await readPostForm(streamOf(body, () => 100, events), CT);
    for await (const _ of file!.chunks) break;
    await Bun.sleep(0);
    expect(events).toEqual({ ended: false, cancelled: true });
  });
});

describe("readPostForm: malformed and truncated bodies", () => {
  const malformedDuring = (during: "form" | "file") => expect.objectContaining({ code: "MalformedPOSTRequest", during });

  test("a body cut anywhere in the file or after it fails the file stream", async () => {
    const data = trickyData();
    const full = formBody([{ name: "a", data: "1" }, filePart(data), { name: "after", data: "later part" }]);
    const fileEnd = Buffer.from(full).indexOf(`\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="after"`);
    const cuts = [
      fileEnd - 1000, // inside the file
      fileEnd - 5, // inside the file's held-back tail
      fileEnd, // just before the file's delimiter
      fileEnd + 2 + BOUNDARY.length, // inside the file's delimiter
      fileEnd + 4 + BOUNDARY.length, // right after it
      fileEnd + 30, // inside the headers of a later part
      full.length - 10, // inside a later part
      full.length - 2, // inside the closing delimiter
    ];
    for (const cut of cuts) {
      const out = await parse(full.subarray(0, cut));
      expect(out.fields).toBeUndefined();
      expect(out.error).toEqual(malformedDuring("file"));
    }
    // Only the closing "--" makes it complete.
    expect((await parse(full)).file?.size).toBe(data.length);
  });

  test("a body cut inside part headers, a field or the preamble", async () => {
    const full = formBody([{ name: "a", data: "value" }, filePart("x")]);
    const text = Buffer.from(full).toString("latin1");
    for (const cut of [0, 5, text.indexOf("form-da"), text.indexOf("valu"), text.indexOf('name="file"')]) {
      const out = await parse(full.subarray(0, cut));
      expect(out.error).toEqual(malformedDuring("form"));
    }
    // Without a closing delimiter a form without a file is incomplete too.
    const noClose = formBody([{ name: "a", data: "1" }]).subarray(0, -2);
    expect((await parse(noClose)).error).toEqual(malformedDuring("form"));
  });

  test("a full boundary followed by other data", async () => {
    const body = formBody([filePart(`abc\r\n--${BOUNDARY}X more`)]);
    expect((await parse(body)).error).toEqual(malformedDuring("file"));
  });

  test("a part without a name", async () => {
    for (const headers of [["Content-Disposition: form-data"], ['Content-Disposition: form-data; name=""'], ["Content-Type: text/plain"], []]) {
      const out = await parse(formBody([{ headers, data: "x" }, filePart("y")]));
      expect(out.error).toEqual(malformedDuring("form"));
    }
  });

  test("part headers over the limit", async () => {
    const long = `X-Padding: ${"p".repeat(MAX_PART_HEADER_BYTES)}`;
    const out = await parse(formBody([{ headers: [long, 'Content-Disposition: form-data; name="a"'], data: "1" }, filePart("y")]));
    expect(out.error).toEqual(malformedDuring("form"));
    // The file part's headers too.
    const out2 = await parse(formBody([{ headers: ['Content-Disposition: form-data; name="file"', long], data: "y" }]));
    expect(out2.error).toEqual(malformedDuring("form"));
  });

  test("form fields over MAX_FORM_FIELDS_BYTES", async () => {
    // Names count along with values.
    const exact = formBody([{ name: "a", data: "v".repeat(MAX_FORM_FIELDS_BYTES - 1) }, filePart("y")]);
    const ok = await parse(exact);
    expect(ok.fields?.[0]?.[1].length).toBe(MAX_FORM_FIELDS_BYTES - 1);
    expect(ok.file?.hex).toBe(hex("y"));

    const over = formBody([{ name: "a", data: "v".repeat(MAX_FORM_FIELDS_BYTES) }, filePart("y")]);
    expect((await parse(over)).error).toEqual(malformedDuring("form"));

    const many = formBody([...Array.from({ length: 200 }, (_, i) => ({ name: `f${i}`, data: "v".repeat(400) })), filePart("y")]);
    expect((await parse(many)).error).toEqual(malformedDuring("form"));
  });

  test("a missing or invalid boundary, or another content type", async () => {
    const body = formBody([filePart("y")]);
    for (const ct of [
      "multipart/form-data",
      "multipart/form-data; boundary=",
      'multipart/form-data; boundary=""',
      `multipart/form-data; boundary=${"b".repeat(71)}`,
      'multipart/form-data; boundary="ends in space "',
      "multipart/form-data; charset=utf-8",
      `multipart/mixed; boundary=${BOUNDARY}`,
      `text/plain; boundary=${BOUNDARY}`,
      "",
    ]) {
      const err = await readPostForm(streamOf(body, () => 10), ct).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(S3Error);
      expect((err as S3Error).code).toBe("MalformedPOSTRequest");
      expect((err as S3Error).status).toBe(400);
    }
  });

  test("a body without any boundary", async () => {
    expect((await parse(bytes("just some bytes, no multipart here"))).error).toEqual(malformedDuring("form"));
  });
});

describe("readPostForm: large files", () => {
  test("a 20 MiB file streamed in 64 KiB chunks is never held whole", async () => {
    const CHUNK = 64 * 1024;
    const FILE_SIZE = 20 * 1024 * 1024;
    const head = bytes(
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="key"\r\n\r\nbig.bin\r\n`,
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = bytes(`\r\n--${BOUNDARY}--\r\n`);
    const sent = new CryptoHasher("sha256");
    let produced = 0; // file bytes handed to the reader
    let consumed = 0; // file bytes that came out of the file stream
    let maxAhead = 0;
    let phase: "head" | "file" | "tail" | "done" = "head";
    let n = 0;
    const stream = new ReadableStream<Uint8Array>(
      {
        pull(c) {
          if (phase === "head") {
            c.enqueue(head);
            phase = "file";
          } else if (phase === "file") {
            const chunk = crypto.getRandomValues(new Uint8Array(Math.min(CHUNK, FILE_SIZE - produced)));
            // Now and then a chunk ends in a delimiter's start, which the next chunk shows is data.
            const decoy = enc.encode(`\r\n--${BOUNDARY.slice(0, 12)}`);
            if (++n % 7 === 0) chunk.set(decoy, chunk.length - decoy.length);
            sent.update(chunk);
            produced += chunk.length;
            maxAhead = Math.max(maxAhead, produced - consumed);
            c.enqueue(chunk);
            if (produced === FILE_SIZE) phase = "tail";
          } else if (phase === "tail") {
            c.enqueue(tail);
            phase = "done";
          } else c.close();
        },
      },
      { highWaterMark: 0 },
    );
    const { fields, file } = await readPostForm(stream, CT);
    expect(fields.get("key")).toBe("big.bin");
    expect(file?.filename).toBe("big.bin");
    const received = new CryptoHasher("sha256");
    let largest = 0;
    for await (const c of file!.chunks) {
      received.update(c);
      consumed += c.length;
      largest = Math.max(largest, c.length);
    }
    expect(consumed).toBe(FILE_SIZE);
    expect(received.digest("hex")).toBe(sent.digest("hex"));
    // Read only as fast as consumed: never more than a couple of chunks ahead.
    expect(maxAhead).toBeLessThanOrEqual(3 * CHUNK);
    expect(largest).toBeLessThanOrEqual(CHUNK + BOUNDARY.length + 4);
  });
});

describe("text that is not UTF-8", () => {
  test("a field value or a part's headers with bytes that are not UTF-8 are refused (InvalidArgument), never decoded to U+FFFD", async () => {
    const latin1Key = formBody([{ name: "key", data: new Uint8Array([0x75, 0x2f, 0xe9]) }, filePart("x")]);
    expect((await parse(latin1Key)).error).toMatchObject({ code: "InvalidArgument", during: "form" });
    const headerBytes = bytes(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="`, new Uint8Array([0xe9]), `.txt"\r\n\r\nx\r\n--${BOUNDARY}--`);
    expect((await parse(headerBytes)).error).toMatchObject({ code: "InvalidArgument", during: "form" });
    const utf8Key = formBody([{ name: "key", data: "u/été" }, filePart("x")]);
    expect((await parse(utf8Key)).fields).toContainEqual(["key", "u/été"]);
  });
});
