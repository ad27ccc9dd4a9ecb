// aws-chunked decoding: AWS's published streaming examples (signed, signed
// with trailer, unsigned with trailer), every split point of the input,
// tampering, truncation, limits, throughput, and a body sent by the AWS SDK.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Readable } from "node:stream";
import { AwsChunkedDecoder, MAX_CHUNK_SIZE, MAX_LINE_LENGTH } from "../../../src/api/s3/chunked.ts";
import { S3Error } from "../../../src/api/s3/errors.ts";
import {
  EMPTY_SHA256,
  sha256Hex,
  signatureHex,
  verifyRequest,
  type AuthContext,
  type PayloadMode,
} from "../../../src/api/s3/sigv4.ts";
import { createChecksum, toBase64 } from "../../../src/util/checksum.ts";

const AKID = "AKIAIOSFODNN7EXAMPLE";
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const DOC_TIME = new Date("2013-05-24T00:00:00Z");
const enc = new TextEncoder();
const latin1 = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function* pieces(body: Uint8Array, sizes: () => number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < body.length; ) {
    const n = Math.max(1, Math.min(sizes(), body.length - o));
    // Copy, so that the decoder cannot lean on one contiguous buffer.
    yield body.slice(o, o + n);
    o += n;
  }
}

async function decode(
  body: Uint8Array | AsyncIterable<Uint8Array>,
  auth: AuthContext,
  expectedTrailers?: string[],
): Promise<{ data: Uint8Array; trailers: Map<string, string> }> {
  const src = body instanceof Uint8Array ? pieces(body, () => 65536) : body;
  const d = new AwsChunkedDecoder(src, auth, { expectedTrailers });
  const out: Uint8Array[] = [];
  for await (const c of d.chunks()) out.push(c.slice());
  return { data: concat(out), trailers: d.trailers };
}

async function decodeError(
  body: Uint8Array | AsyncIterable<Uint8Array>,
  auth: AuthContext,
  expectedTrailers?: string[],
): Promise<S3Error> {
  try {
    await decode(body, auth, expectedTrailers);
  } catch (e) {
    if (e instanceof S3Error) return e;
    throw e;
  }
  throw new Error("expected an S3Error");
}

// --- the documented examples (sigv4-streaming.html, sigv4-streaming-trailers.html)

const A_65536 = "a".repeat(65536);
const A_1024 = "a".repeat(1024);

function docAuth(headers: Record<string, string>, path: string, host = "s3.amazonaws.com"): AuthContext {
  return verifyRequest(
    { method: "PUT", rawPath: path, rawQuery: "", headers: new Headers({ host, "x-amz-date": "20130524T000000Z", ...headers }) },
    (id) => (id === AKID ? SECRET : undefined),
    { region: "us-east-1", now: DOC_TIME },
  );
}

const signedAuth = () =>
  docAuth(
    {
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "content-encoding": "aws-chunked",
      "x-amz-decoded-content-length": "66560",
      "content-length": "66824",
      authorization:
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    },
    "/examplebucket/chunkObject.txt",
  );

const SIGNED_BODY =
  `10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n${A_65536}\r\n` +
  `400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n${A_1024}\r\n` +
  `0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n`;

const trailerAuth = () =>
  docAuth(
    {
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
      "content-encoding": "aws-chunked",
      "x-amz-decoded-content-length": "66560",
      "x-amz-trailer": "x-amz-checksum-crc32c",
      authorization:
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    },
    "/examplebucket/chunkObject.txt",
  );

const TRAILER_CHUNKS =
  `10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n${A_65536}\r\n` +
  `400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n${A_1024}\r\n` +
  `0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n`;
const TRAILER_LINES =
  "x-amz-checksum-crc32c:sOO8/Q==\r\n" +
  "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n";
const TRAILER_BODY = `${TRAILER_CHUNKS}${TRAILER_LINES}\r\n`;

const unsignedTrailerAuth = () =>
  docAuth(
    {
      "content-encoding": "aws-chunked",
      "x-amz-decoded-content-length": "17408",
      "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      "x-amz-trailer": "x-amz-checksum-crc32",
      authorization:
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-trailer,Signature=8fdf2b7a7005b82789d2a9cec832705457298e8a6a908f8c85f17e44c707aa64",
    },
    "/Key+",
    "amzn-s3-demo-bucket.s3.amazonaws.com",
  );

const A_8192 = "a".repeat(8192);
const UNSIGNED_TRAILER_BODY = `2000\r\n${A_8192}\r\n2000\r\n${A_8192}\r\n400\r\n${A_1024}\r\n0\r\nx-amz-checksum-crc32:s3SFCQ==\r\n\r\n`;

describe("AWS documentation examples", () => {
  test("STREAMING-AWS4-HMAC-SHA256-PAYLOAD: 64 KiB + 1 KiB of 'a'", async () => {
    const auth = signedAuth();
    expect(auth.payload.kind).toBe("streaming-signed");
    const { data, trailers } = await decode(latin1(SIGNED_BODY), auth);
    expect(data.length).toBe(66560);
    expect(data.every((b) => b === 0x61)).toBe(true);
    expect(trailers.size).toBe(0);
    // The same body without its final CRLF, as some clients send it.
    expect((await decode(latin1(SIGNED_BODY.slice(0, -2)), auth)).data.length).toBe(66560);
  });

  test("the chunk signatures are the documented ones (string to sign checked by hand)", () => {
    const auth = signedAuth();
    const sts = [
      "AWS4-HMAC-SHA256-PAYLOAD",
      "20130524T000000Z",
      "20130524/us-east-1/s3/aws4_request",
      "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
      EMPTY_SHA256,
      "bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a",
    ].join("\n");
    expect(sha256Hex(A_65536)).toBe("bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a");
    expect(signatureHex(auth.signingKey, sts)).toBe("ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
  });

  test("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER with a CRC32C trailer", async () => {
    const auth = trailerAuth();
    expect(auth.payload.kind).toBe("streaming-signed-trailer");
    for (const body of [
      TRAILER_BODY,
      `${TRAILER_CHUNKS}${TRAILER_LINES}`, // no final blank line, as in the AWS page
      `${TRAILER_CHUNKS}\r\n${TRAILER_LINES}`, // a blank line before the trailers
      `${TRAILER_CHUNKS}${TRAILER_LINES.replaceAll("\r\n", "\n")}\n\r\n`,
    ]) {
      const { data, trailers } = await decode(latin1(body), auth);
      expect(data.length).toBe(66560);
      expect([...trailers]).toEqual([["x-amz-checksum-crc32c", "sOO8/Q=="]]);
      const crc = createChecksum("CRC32C");
      crc.update(data);
      expect(toBase64(crc.digest())).toBe(trailers.get("x-amz-checksum-crc32c")!);
    }
  });

  test("STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer", async () => {
    const auth = unsignedTrailerAuth();
    expect(auth.payload.kind).toBe("streaming-unsigned-trailer");
    for (const body of [UNSIGNED_TRAILER_BODY, UNSIGNED_TRAILER_BODY.replace("s3SFCQ==\r\n\r\n", "s3SFCQ==\n\r\n\r\n")]) {
      const { data, trailers } = await decode(latin1(body), auth);
      expect(data.length).toBe(17408);
      expect(trailers.get("x-amz-checksum-crc32")).toBe("s3SFCQ==");
      const crc = createChecksum("CRC32");
      crc.update(data);
      expect(toBase64(crc.digest())).toBe("s3SFCQ==");
    }
  });
});

// --- every split point

describe("every way of splitting the body decodes the same", () => {
  const cases: Array<[string, () => AuthContext, string, number]> = [
    ["signed", signedAuth, SIGNED_BODY, 66560],
    ["signed trailer", trailerAuth, TRAILER_BODY, 66560],
    ["unsigned trailer", unsignedTrailerAuth, UNSIGNED_TRAILER_BODY, 17408],
  ];

  for (const [name, auth, text, size] of cases) {
    test(`${name}: one-byte pieces`, async () => {
      const { data } = await decode(pieces(latin1(text), () => 1), auth());
      expect(data.length).toBe(size);
    });

    test(`${name}: random pieces (seeded)`, async () => {
      let x = 12345;
      const rnd = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x);
      for (let round = 0; round < 30; round++) {
        const max = [2, 7, 100, 5000, 65536][round % 5]!;
        const { data, trailers } = await decode(pieces(latin1(text), () => 1 + (rnd() % max)), auth());
        expect(data.length).toBe(size);
        expect(trailers.size).toBe(name === "signed" ? 0 : 1);
      }
    });
  }

  test("a small signed body split in two at every position", async () => {
    const auth = signedAuth();
    const body = encodeChunked(enc.encode("hello, chunked world!"), 5, auth, ["x-amz-checksum-crc32", "AAAAAA=="]);
    for (let cut = 0; cut <= body.length; cut++) {
      const src = (async function* () {
        yield body.slice(0, cut);
        yield body.slice(cut);
      })();
      const { data } = await decode(src, { ...auth, payload: { kind: "streaming-signed-trailer" } });
      expect(new TextDecoder().decode(data)).toBe("hello, chunked world!");
    }
  });
});

/**
 * Encodes `data` as aws-chunked in chunks of `chunkSize`, signing with
 * `auth`'s key and seed; with `trailer`, in signed-trailer form.
 */
function encodeChunked(data: Uint8Array, chunkSize: number, auth: AuthContext, trailer?: [string, string]): Uint8Array {
  const parts: Uint8Array[] = [];
  let prev = auth.seedSignature;
  const sign = (chunk: Uint8Array) => {
    const sts = `AWS4-HMAC-SHA256-PAYLOAD\n${auth.amzDate}\n${auth.scope}\n${prev}\n${EMPTY_SHA256}\n${sha256Hex(chunk)}`;
    prev = signatureHex(auth.signingKey, sts);
    return prev;
  };
  for (let o = 0; o < data.length; o += chunkSize) {
    const chunk = data.subarray(o, Math.min(o + chunkSize, data.length));
    parts.push(enc.encode(`${chunk.length.toString(16)};chunk-signature=${sign(chunk)}\r\n`), chunk, enc.encode("\r\n"));
  }
  parts.push(enc.encode(`0;chunk-signature=${sign(new Uint8Array(0))}\r\n`));
  if (trailer) {
    const line = `${trailer[0]}:${trailer[1]}\n`;
    const sts = `AWS4-HMAC-SHA256-TRAILER\n${auth.amzDate}\n${auth.scope}\n${prev}\n${sha256Hex(line)}`;
    parts.push(enc.encode(`${trailer[0]}:${trailer[1]}\r\nx-amz-trailer-signature:${signatureHex(auth.signingKey, sts)}\r\n`));
  }
  parts.push(enc.encode("\r\n"));
  return concat(parts);
}

// --- refusals

describe("refusals", () => {
  test("a changed data byte, a changed chunk signature, a wrong seed, a missing signature", async () => {
    const auth = signedAuth();
    const body = latin1(SIGNED_BODY);
    const flipped = body.slice();
    flipped[66_000]! ^= 1; // inside the second chunk's data
    expect((await decodeError(flipped, auth)).code).toBe("SignatureDoesNotMatch");
    const sig = latin1(SIGNED_BODY.replace("ad80c730", "ad80c731"));
    expect((await decodeError(sig, auth)).code).toBe("SignatureDoesNotMatch");
    const wrongSeed = { ...auth, seedSignature: "0".repeat(64) };
    expect((await decodeError(body, wrongSeed)).code).toBe("SignatureDoesNotMatch");
    const noSig = latin1(SIGNED_BODY.replace(";chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497", ""));
    expect((await decodeError(noSig, auth)).code).toBe("SignatureDoesNotMatch");
  });

  test("a changed trailer value or trailer signature; trailers after the signature", async () => {
    const auth = trailerAuth();
    expect((await decodeError(latin1(TRAILER_BODY.replace("sOO8/Q==", "sOO8/R==")), auth)).code).toBe(
      "SignatureDoesNotMatch",
    );
    expect((await decodeError(latin1(TRAILER_BODY.replace("d81f82fc", "d81f82fd")), auth)).code).toBe(
      "SignatureDoesNotMatch",
    );
    const extra = `${TRAILER_CHUNKS}${TRAILER_LINES}x-amz-checksum-crc32:AAAAAA==\r\n\r\n`;
    expect((await decodeError(latin1(extra), auth)).code).toBe("InvalidRequest");
  });

  test("trailers are refused when the mode has none; unsigned trailers ignore a signature line", async () => {
    const extra = SIGNED_BODY.slice(0, -2) + "x-amz-checksum-crc32:AAAAAA==\r\n\r\n";
    expect((await decodeError(latin1(extra), signedAuth())).code).toBe("InvalidRequest");
    const withSig = UNSIGNED_TRAILER_BODY.replace("\r\n\r\n", `\r\nx-amz-trailer-signature:${"0".repeat(64)}\r\n\r\n`);
    expect((await decode(latin1(withSig), unsignedTrailerAuth())).trailers.get("x-amz-checksum-crc32")).toBe("s3SFCQ==");
  });

  describe("truncation at any point is IncompleteBody", () => {
    const cases: Array<[string, () => AuthContext, string, string, string[]]> = [
      // [name, auth, body, the prefix that is already complete, x-amz-trailer]
      ["signed", signedAuth, SIGNED_BODY, SIGNED_BODY.slice(0, -2), []],
      ["signed trailer", trailerAuth, TRAILER_BODY, `${TRAILER_CHUNKS}${TRAILER_LINES}`, ["x-amz-checksum-crc32c"]],
      [
        "unsigned trailer",
        unsignedTrailerAuth,
        UNSIGNED_TRAILER_BODY,
        UNSIGNED_TRAILER_BODY.slice(0, -2),
        ["x-amz-checksum-crc32"],
      ],
    ];
    for (const [name, auth, text, complete, expected] of cases) {
      test(name, async () => {
        const body = latin1(text);
        const a = auth();
        // Positions inside headers, data, CRLFs and trailers; one-byte steps near the framing.
        const cuts = new Set<number>();
        for (let i = 0; i < complete.length; i += 997) cuts.add(i);
        for (const anchor of [0, 65536 + 90, 8192 + 6, 66560 + 180, complete.length - 120]) {
          for (let d = -6; d <= 100; d++) if (anchor + d >= 0 && anchor + d < complete.length) cuts.add(anchor + d);
        }
        for (let i = Math.max(0, complete.length - 200); i < complete.length; i++) cuts.add(i);
        expect((await decode(latin1(complete), a, expected)).data.length).toBeGreaterThan(0);
        for (const cut of cuts) {
          const e = await decodeError(body.slice(0, cut), a, expected);
          if (e.code !== "IncompleteBody") throw new Error(`cut at ${cut}: ${e.code} ${e.message}`);
        }
      });
    }
  });

  test("framing errors and limits", async () => {
    const auth = unsignedTrailerAuth();
    const err = async (s: string) => (await decodeError(latin1(s), auth)).code;
    expect(await err("zz\r\n")).toBe("InvalidRequest");
    expect(await err("\r\n")).toBe("InvalidRequest");
    expect(await err("3\r\nabcX\r\n0\r\n\r\n")).toBe("InvalidRequest");
    expect(await err(`${(MAX_CHUNK_SIZE + 1).toString(16)}\r\n`)).toBe("InvalidRequest");
    expect(await err("123456789\r\n")).toBe("InvalidRequest");
    expect(await err(`1;${"x".repeat(MAX_LINE_LENGTH)}\r\n`)).toBe("InvalidRequest");
    expect(await err("0\r\nno-colon-here\r\n\r\n")).toBe("InvalidRequest");
    expect(await err("0\r\na:1\r\na:2\r\n\r\n")).toBe("InvalidRequest");
    expect(await err("0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\nmore\r\n")).toBe("InvalidRequest");
    expect(await err("")).toBe("IncompleteBody");
    // A smaller configured limit applies.
    const small = new AwsChunkedDecoder(pieces(latin1("11\r\n"), () => 10), auth, { maxChunkSize: 16 });
    const e = await (async () => {
      try {
        for await (const _ of small.chunks());
      } catch (x) {
        return x as S3Error;
      }
    })();
    expect(e?.code).toBe("InvalidRequest");
    // Not an aws-chunked mode: a programming error, not a client error.
    const unsigned = { ...auth, payload: { kind: "unsigned" } as PayloadMode };
    expect(() => new AwsChunkedDecoder(pieces(new Uint8Array(0), () => 1), unsigned)).toThrow();
  });

  test("announced trailers are required; unannounced ones may be absent", async () => {
    const auth = unsignedTrailerAuth();
    const cut = UNSIGNED_TRAILER_BODY.slice(0, UNSIGNED_TRAILER_BODY.indexOf("x-amz-checksum"));
    expect((await decode(latin1(cut), auth)).trailers.size).toBe(0);
    expect((await decodeError(latin1(cut), auth, ["x-amz-checksum-crc32"])).code).toBe("IncompleteBody");
    expect((await decodeError(latin1(UNSIGNED_TRAILER_BODY), auth, ["x-amz-checksum-crc32c"])).code).toBe("IncompleteBody");
    expect(() => new AwsChunkedDecoder(pieces(new Uint8Array(0), () => 1), signedAuth(), { expectedTrailers: ["x"] })).toThrow();
  });

  test("the unsigned-trailer mode accepts chunk extensions and an empty body", async () => {
    const auth = unsignedTrailerAuth();
    const { data, trailers } = await decode(latin1("3;foo=bar\r\nabc\r\n0\r\n\r\n"), auth);
    expect(new TextDecoder().decode(data)).toBe("abc");
    expect(trailers.size).toBe(0);
    expect((await decode(latin1("0\r\n"), auth)).data.length).toBe(0);
  });
});

// --- throughput

test("decoding a 64 MiB signed body runs at hundreds of MiB/s", async () => {
  const auth = signedAuth();
  const payload = new Uint8Array(64 << 20);
  for (let i = 0; i < payload.length; i += 4096) payload[i] = i & 0xff;
  for (const chunkSize of [64 << 10, 1 << 20]) {
    const body = encodeChunked(payload, chunkSize, auth);
    // Pre-cut into 64 KiB pieces (as Bun delivers request bodies), outside the timed part.
    const cut: Uint8Array[] = [];
    for (let o = 0; o < body.length; o += 65536) cut.push(body.subarray(o, o + 65536));
    const d = new AwsChunkedDecoder(
      (async function* () {
        yield* cut;
      })(),
      auth,
    );
    const t0 = performance.now();
    let n = 0;
    for await (const c of d.chunks()) n += c.length;
    const mibps = 64 / ((performance.now() - t0) / 1000);
    console.log(`aws-chunked signed, ${chunkSize >> 10} KiB chunks: ${mibps.toFixed(0)} MiB/s`);
    expect(n).toBe(payload.length);
    // SHA-256 alone is ~1.9 GiB/s here; the VM is noisy, so the floor is loose.
    expect(mibps).toBeGreaterThan(200);
  }
});

// --- a body from the real AWS SDK (unsigned payload with a CRC32 trailer)

describe("aws-chunked body sent by the AWS SDK for JavaScript v3", () => {
  let server: ReturnType<typeof Bun.serve>;
  const seen: Array<{ mode: string; size: number; trailer: string | undefined; crc: string }> = [];

  beforeAll(() => {
    server = Bun.serve({
      port: 0,
      async fetch(request) {
        const url = request.url;
        const start = url.indexOf("/", url.indexOf("//") + 2);
        const q = url.indexOf("?", start);
        const auth = verifyRequest(
          {
            method: request.method,
            rawPath: url.slice(start, q < 0 ? undefined : q),
            rawQuery: q < 0 ? "" : url.slice(q + 1),
            headers: request.headers,
          },
          (id) => (id === "GKsdk" ? "sdk-secret" : undefined),
          { region: "garage" },
        );
        const d = new AwsChunkedDecoder(request.body!, auth, {
          expectedTrailers: request.headers.get("x-amz-trailer")?.split(",") ?? [],
        });
        const crc = createChecksum("CRC32");
        let size = 0;
        for await (const c of d.chunks()) {
          crc.update(c);
          size += c.length;
        }
        seen.push({ mode: auth.payload.kind, size, trailer: d.trailers.get("x-amz-checksum-crc32"), crc: toBase64(crc.digest()) });
        return new Response(null, { headers: { etag: '"e"' } });
      },
    });
  });
  afterAll(() => server.stop(true));

  test("PutObject of a 1 MiB + 7 byte stream", async () => {
    const client = new S3Client({
      endpoint: `http://localhost:${server.port}`,
      region: "garage",
      forcePathStyle: true,
      credentials: { accessKeyId: "GKsdk", secretAccessKey: "sdk-secret" },
      maxAttempts: 1,
    });
    const size = (1 << 20) + 7;
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = (i * 31) & 0xff;
    const stream = Readable.from((function* () {
      for (let o = 0; o < size; o += 100_000) yield data.subarray(o, o + 100_000);
    })());
    await client.send(new PutObjectCommand({ Bucket: "b", Key: "big", Body: stream, ContentLength: size }));
    client.destroy();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.mode).toBe("streaming-unsigned-trailer");
    expect(seen[0]!.size).toBe(size);
    expect(seen[0]!.trailer).toBe(seen[0]!.crc);
  });
});
