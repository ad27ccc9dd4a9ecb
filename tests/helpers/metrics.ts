// Reads a test server's S3 request counters from /metrics on its admin endpoint, so that a
// test driving a real client can check which operations the client really used and that
// none was answered with a server error.
import type { TestServer } from "./server";

/** What the S3 API counted: requests by endpoint, and errors by `endpoint status`. */
export interface S3Counts {
  requests: Map<string, number>;
  errors: Map<string, number>;
}

const REQUEST = /^api_s3_request_counter\{api_endpoint="([^"]*)"\} (\d+)$/;
const ERROR = /^api_s3_error_counter\{api_endpoint="([^"]*)",status_code="(\d+)"\} (\d+)$/;

export async function s3Counts(server: TestServer): Promise<S3Counts> {
  const r = await fetch(`http://127.0.0.1:${server.adminPort}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
  const requests = new Map<string, number>();
  const errors = new Map<string, number>();
  for (const line of (await r.text()).split("\n")) {
    const req = REQUEST.exec(line);
    if (req) requests.set(req[1]!, Number(req[2]));
    const err = ERROR.exec(line);
    if (err) errors.set(`${err[1]} ${err[2]}`, Number(err[3]));
  }
  return { requests, errors };
}

/** Counts that grew from `before` to `after` (only those that did). */
export function grown(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) if (v > (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}

/** Errors with a 5xx status: a server failure, or (501) something the client needed that Bunker lacks. */
export function serverErrors(counts: S3Counts): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of counts.errors) if (/ 5\d\d$/.test(k)) out[k] = v;
  return out;
}

/** The block buffer budget (block_ram_buffer_max) as /metrics shows it: its size, what is leased now, the most ever leased. */
export async function budgetGauges(server: TestServer): Promise<{ max: number; used: number; peak: number }> {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
  return { max: value("block_buffer_budget_bytes"), used: value("block_buffer_used_bytes"), peak: value("block_buffer_peak_bytes") };
}
