// The fault suite's clients: a few concurrent workers sending signed S3 requests to random
// storage nodes: register operations on a small key space (PUT with self-describing bodies from
// inline to multi-block sizes, GET verified byte for byte, DELETE), multipart uploads, listings,
// and conditional-create races (`If-None-Match: *` on a fresh key through several nodes at
// once). Every request is bounded by OP_TIMEOUT_MS; every loop by a deadline and a count.
import { signedFetchTo, type SigningTarget } from "../helpers/signed";
import { mulberry32 } from "../helpers/random";
import { BUCKET } from "./cluster";
import type { History, Op, OpKind, Outcome, ReadResult } from "./history";
import { decodeBody, makeBody } from "./values";

/** A request with no complete answer within this is indeterminate (a paused node never answers). */
export const OP_TIMEOUT_MS = 8_000;
/** Register keys: few, so that workers collide on them. */
export const REGISTER_KEYS = Array.from({ length: 10 }, (_, i) => `r/${i}`);
/** Requests of one conditional-create race, each through a different node. */
const RACERS = 3;
/** S3's smallest non-last part; a multipart upload is one or two such parts plus a short tail. */
const PART_SIZE = 5 * 1024 * 1024;
/** Pages of one listing: far more than the keys a run writes (register keys + one per race). */
const MAX_LIST_PAGES = 20;
/** A worker's pause between two operations. */
const THINK_MS: [number, number] = [10, 40];
/** Hard bound on a worker's operations, whatever the duration asked. */
const MAX_OPS_PER_WORKER = 50_000;

export interface WorkloadOptions {
  seed: number;
  workers: number;
  /** The workload stops starting operations once this says so. */
  done: () => boolean;
  nodes: number[];
  target: (node: number) => SigningTarget;
  history: History;
}

/** Status and body of one request; status null when there was no answer. */
interface Answer {
  status: number | null;
  body: Uint8Array;
  headers: Headers | null;
  error?: string;
}

async function request(to: SigningTarget, method: string, target: string, headers: Record<string, string> = {}, body?: Uint8Array): Promise<Answer> {
  try {
    const r = await signedFetchTo(to, method, target, { headers, body, signal: AbortSignal.timeout(OP_TIMEOUT_MS) });
    const bytes = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, body: bytes, headers: r.headers };
  } catch (err) {
    return { status: null, body: new Uint8Array(), headers: null, error: `${(err as Error).name}: ${(err as Error).message}`.slice(0, 160) };
  }
}

const path = (key: string) => `/${BUCKET}/${key}`;
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Outcome of a write's answer: 2xx ok; 412/409 on a conditional create refused; anything else indeterminate. */
function writeOutcome(a: Answer, conditional: boolean): Outcome {
  if (a.status !== null && a.status >= 200 && a.status < 300) return "ok";
  if (conditional && (a.status === 412 || a.status === 409)) return "fail";
  return "info";
}

const errorOf = (a: Answer) => a.error ?? (a.status !== null && a.status >= 300 ? `${a.status} ${/<Code>([^<]*)<\/Code>/.exec(text(a.body))?.[1] ?? ""}`.trim() : undefined);

export class Workload {
  private raceCount = 0;
  private mpuRunning = false;

  constructor(private readonly o: WorkloadOptions) {}

  async run(): Promise<void> {
    await Promise.all(Array.from({ length: this.o.workers }, (_, w) => this.worker(w)));
  }

  private async worker(w: number): Promise<void> {
    const rng = mulberry32((this.o.seed ^ Math.imul(w + 101, 0x85ebca6b)) >>> 0);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng() * xs.length)]!;
    for (let n = 0; n < MAX_OPS_PER_WORKER && !this.o.done(); n++) {
      const node = pick(this.o.nodes);
      const key = pick(REGISTER_KEYS);
      const r = rng();
      if (r < 0.4) await this.get(w, node, key, "get");
      else if (r < 0.68) await this.put(w, node, key, this.size(rng));
      else if (r < 0.76) await this.del(w, node, key);
      else if (r < 0.82) await this.list(w, node, pick(["", "r/", "c/"]), "list");
      else if (r < 0.85 && !this.mpuRunning) await this.mpu(w, node, key, rng() < 0.7 ? 2 : 3, 1 + Math.floor(rng() * 300_000));
      else if (r < 0.93) await this.race(w, rng);
      else await this.put(w, node, key, this.size(rng));
      await Bun.sleep(THINK_MS[0] + rng() * (THINK_MS[1] - THINK_MS[0]));
    }
  }

  /** Inline-sized, one block, or several blocks (block_size is 1 MiB). */
  private size(rng: () => number): number {
    const r = rng();
    if (r < 0.5) return 60 + Math.floor(rng() * 400);
    if (r < 0.85) return 4_096 + Math.floor(rng() * 60_000);
    return 1_048_576 + Math.floor(rng() * 1_200_000);
  }

  private record(w: number, kind: OpKind, key: string, node: number, id: number, start: number, a: Answer, outcome: Outcome, extra: Partial<Op> = {}): Op {
    const op: Op = { id, worker: w, kind, key, node, start, end: this.o.history.now(), outcome, status: a.status, error: errorOf(a), ...extra };
    this.o.history.add(op);
    return op;
  }

  async put(w: number, node: number, key: string, size: number, conditional = false, race?: number): Promise<Op> {
    const h = this.o.history;
    const id = h.id();
    const body = makeBody(this.o.seed, key, id, size);
    const start = h.now();
    const a = await request(this.o.target(node), "PUT", path(key), conditional ? { "if-none-match": "*" } : {}, body);
    return this.record(w, conditional ? "cput" : "put", key, node, id, start, a, writeOutcome(a, conditional), { bytes: body.length, ...(race === undefined ? {} : { race }) });
  }

  async del(w: number, node: number, key: string): Promise<Op> {
    const h = this.o.history;
    const id = h.id();
    const start = h.now();
    const a = await request(this.o.target(node), "DELETE", path(key));
    return this.record(w, "delete", key, node, id, start, a, writeOutcome(a, false));
  }

  /** A GET whose body is decoded to the write it came from; 404 NoSuchKey reads "absent". */
  async get(w: number, node: number, key: string, kind: "get" | "final-get"): Promise<Op> {
    const h = this.o.history;
    const id = h.id();
    const start = h.now();
    const a = await request(this.o.target(node), "GET", path(key));
    let read: ReadResult | undefined;
    let outcome: Outcome = "info";
    if (a.status === 200) {
      const d = decodeBody(this.o.seed, key, a.body);
      read = d.ok ? { kind: "value", op: d.op } : { kind: "bad", why: d.why };
      outcome = "ok";
    } else if (a.status === 404 && text(a.body).includes("<Code>NoSuchKey</Code>")) {
      read = { kind: "absent" };
      outcome = "ok";
    }
    return this.record(w, kind, key, node, id, start, a, outcome, read ? { read, bytes: a.body.length } : {});
  }

  /** ListObjectsV2 of a prefix, every page; ok only when every page was answered. */
  async list(w: number, node: number, prefix: string, kind: "list" | "final-list"): Promise<Op> {
    const h = this.o.history;
    const id = h.id();
    const start = h.now();
    const listed: string[] = [];
    let token: string | undefined;
    let a: Answer = { status: null, body: new Uint8Array(), headers: null, error: "no page" };
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const q = new URLSearchParams({ "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) });
      a = await request(this.o.target(node), "GET", `/${BUCKET}?${q.toString().replaceAll("+", "%20")}`);
      if (a.status !== 200) break;
      const xml = text(a.body);
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) listed.push(m[1]!);
      token = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1];
      if (!xml.includes("<IsTruncated>true</IsTruncated>") || !token) {
        return this.record(w, kind, prefix, node, id, start, a, "ok", { listed });
      }
    }
    return this.record(w, kind, prefix, node, id, start, a, "info");
  }

  /**
   * A multipart upload of 2 or 3 parts. Its value exists only once CompleteMultipartUpload is
   * sent: an upload abandoned before that is a definite failure, one whose completion got no
   * clear answer is indeterminate.
   */
  async mpu(w: number, node: number, key: string, parts: number, tail: number): Promise<Op> {
    this.mpuRunning = true;
    try {
      const h = this.o.history;
      const id = h.id();
      const body = makeBody(this.o.seed, key, id, PART_SIZE * (parts - 1) + tail);
      const to = this.o.target(node);
      const start = h.now();
      const created = await request(to, "POST", `${path(key)}?uploads`);
      const uploadId = created.status === 200 ? /<UploadId>([^<]*)<\/UploadId>/.exec(text(created.body))?.[1] : undefined;
      if (!uploadId) return this.record(w, "mpu", key, node, id, start, created, "fail");
      const etags: string[] = [];
      for (let p = 0; p < parts; p++) {
        const chunk = body.subarray(p * PART_SIZE, Math.min(body.length, (p + 1) * PART_SIZE));
        const a = await request(to, "PUT", `${path(key)}?partNumber=${p + 1}&uploadId=${encodeURIComponent(uploadId)}`, {}, chunk);
        const etag = a.status === 200 ? a.headers?.get("etag") : null;
        if (!etag) {
          await request(to, "DELETE", `${path(key)}?uploadId=${encodeURIComponent(uploadId)}`);
          return this.record(w, "mpu", key, node, id, start, a, "fail");
        }
        etags.push(etag);
      }
      const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
      const done = await request(to, "POST", `${path(key)}?uploadId=${encodeURIComponent(uploadId)}`, { "content-type": "application/xml" }, new TextEncoder().encode(xml));
      // CompleteMultipartUpload can fail with a 200 whose body is an <Error>.
      const ok = done.status === 200 && text(done.body).includes("<CompleteMultipartUploadResult");
      return this.record(w, "mpu", key, node, id, start, done, ok ? "ok" : "info", { bytes: body.length });
    } finally {
      this.mpuRunning = false;
    }
  }

  /** RACERS conditional creates of one fresh key at once, each through a different node. */
  private async race(w: number, rng: () => number): Promise<void> {
    const race = ++this.raceCount * 1000 + w;
    const key = `c/${race}`;
    const nodes = [...this.o.nodes].sort(() => rng() - 0.5).slice(0, RACERS);
    const sizes = nodes.map(() => this.size(rng));
    await Promise.all(nodes.map((n, i) => this.put(w, n, key, sizes[i]!, true, race)));
  }
}
