// The declared length of a request body is plain decimal: "0x10" or "1e3" is not a length.
import { describe, expect, test } from "bun:test";
import { PayloadReader } from "../../../src/api/s3/body";
import { S3Error } from "../../../src/api/s3/errors";
import type { S3Request } from "../../../src/api/s3/context";

function request(headers: Record<string, string>, kind: "unsigned" | "streaming-unsigned-trailer"): S3Request {
  return { headers: new Headers(headers), auth: { payload: { kind } } } as unknown as S3Request;
}

describe("PayloadReader: declared length", () => {
  test("x-amz-decoded-content-length that Number() would take is refused with InvalidArgument", () => {
    for (const bad of ["0x10", "1e3", "", "-1", "1.5", "7 8"]) {
      let err: unknown;
      try {
        new PayloadReader(request({ "x-amz-decoded-content-length": bad }, "streaming-unsigned-trailer"));
      } catch (e) {
        err = e;
      }
      expect(err instanceof S3Error && err.code).toBe("InvalidArgument");
    }
  });
  test("a decimal length is taken", () => {
    expect(new PayloadReader(request({ "x-amz-decoded-content-length": "16" }, "streaming-unsigned-trailer")).declaredLength).toBe(16);
    expect(new PayloadReader(request({ "content-length": "1000" }, "unsigned")).declaredLength).toBe(1000);
  });
});

/** An object-data request (PutObject, UploadPart) with `body` as its stream. */
function objectRequest(headers: Record<string, string>, body?: Uint8Array[], kind = "unsigned"): S3Request {
  const stream = body && new ReadableStream<Uint8Array>({
    start(c) {
      for (const b of body) c.enqueue(b);
      c.close();
    },
  });
  return { headers: new Headers(headers), auth: { payload: { kind } }, request: { body: stream ?? null } } as unknown as S3Request;
}

function refusal(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof S3Error ? `${e.status} ${e.code}` : String(e);
  }
  return undefined;
}

describe("PayloadReader: how an object body is framed", () => {
  test("no Content-Length and no chunked framing: 411 MissingContentLength, never an empty object", () => {
    expect(refusal(() => new PayloadReader(objectRequest({})))).toBe("411 MissingContentLength");
  });
  test("aws-chunked without x-amz-decoded-content-length: 411, chunked or not", () => {
    expect(refusal(() => new PayloadReader(objectRequest({ "transfer-encoding": "chunked" }, [], "streaming-unsigned-trailer")))).toBe("411 MissingContentLength");
    expect(refusal(() => new PayloadReader(objectRequest({ "content-length": "40" }, [], "streaming-unsigned-trailer")))).toBe("411 MissingContentLength");
  });
  test("a transfer coding other than chunked: 501 NotImplemented (it would be stored still coded)", () => {
    for (const te of ["gzip, chunked", "gzip", "identity", "chunked, chunked"])
      expect(refusal(() => new PayloadReader(objectRequest({ "transfer-encoding": te }), 1024))).toBe("501 NotImplemented");
  });
  test("chunked without a length is read to its end, of unknown declared length", async () => {
    const reader = new PayloadReader(objectRequest({ "transfer-encoding": "chunked" }, [new Uint8Array(3).fill(1), new Uint8Array(5).fill(2)]));
    expect(reader.declaredLength).toBeUndefined();
    let total = 0;
    for await (const c of reader.chunks()) total += c.length;
    expect(total).toBe(8);
  });
  test("chunked without a length is still bounded: more than the maximum is EntityTooLarge", async () => {
    const MAX = 5 * 1024 * 1024;
    const piece = new Uint8Array(1024 * 1024);
    const reader = new PayloadReader(objectRequest({ "transfer-encoding": "chunked" }, Array.from({ length: 6 }, () => piece)), MAX);
    let err: unknown;
    let read = 0;
    try {
      for await (const c of reader.chunks()) read += c.length;
    } catch (e) {
      err = e;
    }
    expect(err instanceof S3Error && err.code).toBe("EntityTooLarge");
    expect(read).toBeLessThanOrEqual(MAX);
  });
});
