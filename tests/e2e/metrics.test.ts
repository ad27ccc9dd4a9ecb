// /metrics on the admin endpoint of a real server: Prometheus text that parses, counters that
// follow the requests made (S3 by endpoint, errors by status, web, block bytes), gauges of the
// node's state, and the metrics_token when one is set.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, GetObjectCommand, PutBucketWebsiteCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

let server: TestServer;
let guarded: TestServer;

/** Every sample of a scrape: `name{labels}` -> value. Fails on a line that is not valid text format. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text format: ${line}`);
    samples.set(m[1]! + (m[2] ?? ""), Number(m[3]));
  }
  return samples;
}

async function scrape(s: TestServer, token?: string): Promise<Map<string, number>> {
  const r = await fetch(`http://127.0.0.1:${s.adminPort}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toContain("text/plain");
  return parse(await r.text());
}

beforeAll(async () => {
  [server, guarded] = await Promise.all([startServer(), startServer({ env: { BUNKER_METRICS_TOKEN: "scrape-me" } })]);
});

afterAll(async () => {
  await Promise.all([server?.stop(), guarded?.stop()]);
});

test("counters follow S3 and web requests; gauges show the node", async () => {
  const before = await scrape(server);
  const s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: "metered" }));
  await s3.send(new PutObjectCommand({ Bucket: "metered", Key: "big", Body: new Uint8Array(100_000).fill(1) }));
  await s3.send(new PutObjectCommand({ Bucket: "metered", Key: "index.html", Body: "<p>hi</p>", ContentType: "text/html" }));
  await expect(s3.send(new GetObjectCommand({ Bucket: "metered", Key: "missing" }))).rejects.toThrow();
  await s3.send(new PutBucketWebsiteCommand({ Bucket: "metered", WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } }));
  expect((await fetch(`http://127.0.0.1:${server.webPort}/`, { headers: { host: `metered.${WEB_ROOT_DOMAIN}` } })).status).toBe(200);

  const after = await scrape(server);
  const grew = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
  expect(grew('api_s3_request_counter{api_endpoint="PutObject"}')).toBe(2);
  expect(grew('api_s3_request_counter{api_endpoint="CreateBucket"}')).toBe(1);
  expect(grew('api_s3_request_counter{api_endpoint="PutBucketWebsite"}')).toBe(1);
  expect(grew('api_s3_error_counter{api_endpoint="GetObject",status_code="404"}')).toBe(1);
  expect(grew('api_s3_request_duration_seconds_count{api_endpoint="PutObject"}')).toBe(2);
  expect(grew('web_request_counter{method="GET"}')).toBe(1);
  expect(grew("block_bytes_written")).toBeGreaterThan(0); // the 100 kB body; the small one is inline
  expect(after.get("cluster_healthy")).toBe(1);
  expect(after.get("cluster_partitions_quorum")).toBe(256);
  expect(after.get("process_resident_memory_bytes")).toBeGreaterThan(1_000_000);
  expect(after.has('worker_passes{worker="lifecycle"}')).toBe(true);
});

test("with a metrics_token, /metrics asks for it", async () => {
  expect((await fetch(`http://127.0.0.1:${guarded.adminPort}/metrics`)).status).toBe(401);
  expect((await fetch(`http://127.0.0.1:${guarded.adminPort}/metrics`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
  expect((await scrape(guarded, "scrape-me")).get("cluster_healthy")).toBe(1);
});
