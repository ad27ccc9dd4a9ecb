// The metrics registry: text format, label escaping, histogram buckets, and the bound on
// label sets; and the S3 endpoint names requests are counted under.
import { describe, expect, test } from "bun:test";
import { DURATION_BUCKETS_S, MAX_SERIES_PER_METRIC, MetricsRegistry } from "../../../src/util/metrics";
import { s3EndpointName } from "../../../src/api/s3/router";

describe("MetricsRegistry", () => {
  test("counters, gauges and histograms in text format, sorted by name", () => {
    const m = new MetricsRegistry();
    const c = m.counter("b_total", "a counter");
    c.inc({ code: 'say "hi"\\\n' });
    c.inc({ code: 'say "hi"\\\n' }, 2);
    m.gauge("a_gauge", "a gauge", () => [[{ worker: "gc" }, 3]]);
    const h = m.histogram("c_seconds", "a histogram");
    h.observe({}, 0.003);
    h.observe({}, 100);
    const text = m.render();
    expect(text).toContain('# TYPE b_total counter\nb_total{code="say \\"hi\\"\\\\\\n"} 3');
    expect(text.indexOf("a_gauge")).toBeLessThan(text.indexOf("b_total"));
    expect(text).toContain('a_gauge{worker="gc"} 3');
    expect(text).toContain('c_seconds_bucket{le="0.0025"} 0');
    expect(text).toContain('c_seconds_bucket{le="0.005"} 1');
    expect(text).toContain(`c_seconds_bucket{le="${DURATION_BUCKETS_S[DURATION_BUCKETS_S.length - 1]}"} 1`);
    expect(text).toContain('c_seconds_bucket{le="+Inf"} 2');
    expect(text).toContain("c_seconds_sum 100.003");
    expect(text).toContain("c_seconds_count 2");
  });
  test("label sets past the bound fold into one overflow series", () => {
    const m = new MetricsRegistry();
    const c = m.counter("many", "many series");
    for (let i = 0; i < MAX_SERIES_PER_METRIC + 50; i++) c.inc({ id: String(i) });
    const lines = m.render().split("\n").filter((l) => l.startsWith("many"));
    expect(lines.length).toBe(MAX_SERIES_PER_METRIC + 1);
    expect(lines).toContain('many{overflow="true"} 50');
  });
  test("registering a counter twice shares it; a gauge that throws is left out", () => {
    const m = new MetricsRegistry();
    m.counter("x", "x").inc();
    m.counter("x", "x").inc();
    m.gauge("broken", "broken", () => {
      throw new Error("closed");
    });
    const text = m.render();
    expect(text).toContain("x 2");
    expect(text).not.toContain("broken");
  });
});

describe("s3EndpointName", () => {
  const name = (method: string, target: { bucketName?: string; key?: string }, query = "", headers: Record<string, string> = {}) =>
    s3EndpointName(method, target, new URLSearchParams(query), new Headers(headers));
  test("names the operations", () => {
    expect(name("GET", {})).toBe("ListBuckets");
    expect(name("GET", { bucketName: "b" }, "list-type=2")).toBe("ListObjectsV2");
    expect(name("GET", { bucketName: "b" })).toBe("ListObjects");
    expect(name("PUT", { bucketName: "b" })).toBe("CreateBucket");
    expect(name("PUT", { bucketName: "b" }, "cors")).toBe("PutBucketCors");
    expect(name("GET", { bucketName: "b" }, "lifecycle")).toBe("GetBucketLifecycleConfiguration");
    expect(name("POST", { bucketName: "b" }, "delete")).toBe("DeleteObjects");
    expect(name("PUT", { bucketName: "b", key: "k" })).toBe("PutObject");
    expect(name("PUT", { bucketName: "b", key: "k" }, "", { "x-amz-copy-source": "a/b" })).toBe("CopyObject");
    expect(name("PUT", { bucketName: "b", key: "k" }, "partNumber=1&uploadId=x")).toBe("UploadPart");
    expect(name("POST", { bucketName: "b", key: "k" }, "uploads")).toBe("CreateMultipartUpload");
    expect(name("POST", { bucketName: "b", key: "k" }, "uploadId=x")).toBe("CompleteMultipartUpload");
    expect(name("DELETE", { bucketName: "b", key: "k" }, "uploadId=x")).toBe("AbortMultipartUpload");
    expect(name("GET", { bucketName: "b", key: "k" }, "acl")).toBe("GetObjectAcl");
    expect(name("GET", { bucketName: "b", key: "k" }, "tagging")).toBe("GetObjectTagging");
    expect(name("OPTIONS", { bucketName: "b", key: "k" })).toBe("Options");
    expect(name("PATCH", { bucketName: "b", key: "k" })).toBe("Unknown");
  });
});

test("a label object passed again counts in its series, and an equal new object in the same one", () => {
  const metrics = new MetricsRegistry();
  const c = metrics.counter("test_identity_counter_total", "test");
  const labels = { api_endpoint: "GetObject" };
  c.inc(labels);
  c.inc(labels);
  c.inc({ api_endpoint: "GetObject" });
  c.inc({ api_endpoint: "HeadObject" });
  const text = metrics.render();
  expect(text).toContain('test_identity_counter_total{api_endpoint="GetObject"} 3');
  expect(text).toContain('test_identity_counter_total{api_endpoint="HeadObject"} 1');
});
