// Object bodies that name their writer: a text header (key, operation id, length) followed by
// bytes drawn from a PRNG seeded by the run seed and the operation id. A body read back is
// decoded to the write that produced it and checked byte for byte, so a read tells which write
// it saw (or that it saw something nobody wrote, or a damaged copy).
import { mulberry32 } from "../helpers/random";

const MAGIC = "BKF1";
/** The header is at most this long: it is searched for its newline in this prefix only. */
const MAX_HEADER = 200;

function fill(seed: number, op: number, out: Uint8Array, from: number): void {
  const rng = mulberry32((seed ^ Math.imul(op + 1, 0x9e3779b1)) >>> 0);
  for (let i = from; i < out.length; i++) out[i] = (rng() * 256) | 0;
}

/** The body of write `op` to `key`, `size` bytes in all (at least the header). */
export function makeBody(seed: number, key: string, op: number, size: number): Uint8Array {
  const header = new TextEncoder().encode(`${MAGIC} key=${key} op=${op} len=${Math.max(size, 0)}\n`);
  const out = new Uint8Array(Math.max(size, header.length));
  out.set(header);
  // Length written in the header must be the real one.
  if (out.length !== size) return makeBody(seed, key, op, out.length);
  fill(seed, op, out, header.length);
  return out;
}

export type Decoded = { ok: true; op: number } | { ok: false; why: string };

/** Which write's body `bytes` is, for a read of `key`; `ok: false` says what is wrong with it. */
export function decodeBody(seed: number, key: string, bytes: Uint8Array): Decoded {
  if (bytes.length === 0) return { ok: false, why: "empty body" };
  const head = new TextDecoder("latin1").decode(bytes.subarray(0, MAX_HEADER));
  const nl = head.indexOf("\n");
  const m = nl < 0 ? null : /^BKF1 key=(\S+) op=(\d+) len=(\d+)$/.exec(head.slice(0, nl));
  if (!m) return { ok: false, why: `no header (${bytes.length} bytes starting ${JSON.stringify(head.slice(0, 40))})` };
  if (m[1] !== key) return { ok: false, why: `body of key ${m[1]} (op ${m[2]})` };
  const op = Number(m[2]);
  const len = Number(m[3]);
  if (len !== bytes.length) return { ok: false, why: `op ${op}: ${bytes.length} bytes, header says ${len}` };
  const expected = makeBody(seed, key, op, len);
  for (let i = 0; i < len; i++) {
    if (expected[i] !== bytes[i]) return { ok: false, why: `op ${op}: byte ${i} of ${len} differs` };
  }
  return { ok: true, op };
}
