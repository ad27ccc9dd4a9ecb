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
