// Worker side of HashPool (hash.ts): BLAKE3 of the byte range it is sent, and the buffer handed
// back; MD5 streams fed block by block. Its only state is the open MD5 streams, so a crash loses
// the jobs in flight and those streams (their requests fail).
//
// blake3-wasm's wasm-bindgen glue, without the package's Node wrapper around it (which loads
// several more modules, ~5 ms of CPU per worker start here, for the same call). Its `hash`
// writes the 32-byte digest into `out`. deploy/build.ts embeds the wasm this glue reads.
import { hash as blake3Into } from "blake3-wasm/dist/wasm/nodejs/blake3_js.js";
import { MD5_STREAMS_PER_WORKER, SHARED_BUFFERS_PER_WORKER, type HashReply, type HashRequest, type JobMemory } from "./hash-protocol.ts";

declare const self: Worker;

/** BLAKE3's default output, a block's name (hash.ts BLAKE3_LEN). */
const BLAKE3_DIGEST_BYTES = 32;

/** Open MD5 streams; null marks one that missed a block, whose digest would be wrong. */
const md5s = new Map<number, Bun.CryptoHasher | null>();

function md5Of(id: number): Bun.CryptoHasher {
  let h = md5s.get(id);
  if (h === null) throw new Error("this MD5 stream already failed");
  if (h === undefined) {
    if (md5s.size >= MD5_STREAMS_PER_WORKER) throw new Error(`more than ${MD5_STREAMS_PER_WORKER} MD5 streams open`);
    h = new Bun.CryptoHasher("md5");
    md5s.set(id, h);
  }
  return h;
}

/**
 * Shared buffers kept by number, oldest first (hash.ts keeps the same list: same insertions and
 * evictions, in message order).
 */
const kept = new Map<number, SharedArrayBuffer>();
/** A collection is due after buffers were forgotten: they hold memory until this heap collects. */
let collectSoon: ReturnType<typeof setTimeout> | undefined;

/** The bytes a job reads, keeping its shared buffer when asked. */
function memoryOf(m: JobMemory): Uint8Array {
  const buf = m.buf ?? (m.shared === undefined ? undefined : kept.get(m.shared));
  if (buf === undefined) throw new Error(`shared buffer ${m.shared} is not kept here`);
  if (m.keep && m.shared !== undefined && buf instanceof SharedArrayBuffer) {
    kept.set(m.shared, buf);
    if (kept.size > SHARED_BUFFERS_PER_WORKER) kept.delete(kept.keys().next().value!);
  }
  return new Uint8Array(buf, m.offset, m.length);
}

/** A plain ArrayBuffer sent by transfer goes back the same way; shared memory never travels back. */
function ownBuffer(m: JobMemory): ArrayBuffer | undefined {
  return m.buf instanceof ArrayBuffer ? m.buf : undefined;
}

function reply(msg: HashReply): void {
  const buf = "buf" in msg ? msg.buf : undefined;
  self.postMessage(msg, buf ? [buf] : []);
}

self.onmessage = (ev: MessageEvent<HashRequest>) => {
  const msg = ev.data;
  switch (msg.kind) {
    case "hash": {
      const { id } = msg;
      const buf = ownBuffer(msg);
      try {
        // The one-shot hash owns no hasher object, so nothing can leak if it throws.
        const digest = new Uint8Array(BLAKE3_DIGEST_BYTES);
        blake3Into(memoryOf(msg), digest);
        reply(buf ? { id, hash: digest, buf } : { id, hash: digest });
      } catch (err) {
        reply(buf ? { id, error: String(err), buf } : { id, error: String(err) });
      }
      return;
    }
    case "md5-update": {
      try {
        md5Of(msg.md5).update(memoryOf(msg));
        reply({ id: msg.id, done: true });
      } catch (err) {
        md5s.set(msg.md5, null);
        reply({ id: msg.id, error: String(err) });
      }
      return;
    }
    case "md5-digest": {
      const h = md5s.get(msg.md5);
      md5s.delete(msg.md5);
      if (h === null) reply({ id: msg.id, error: "a block of this MD5 stream failed to hash" });
      // A stream that never got a block is the MD5 of nothing.
      else reply({ id: msg.id, digest: new Uint8Array((h ?? new Bun.CryptoHasher("md5")).digest()) });
      return;
    }
    case "md5-drop":
      md5s.delete(msg.md5);
      return;
    case "forget":
      kept.delete(msg.shared);
      // Forgotten buffers come in bursts (a pool dropping its free ones): one collection after.
      collectSoon ??= setTimeout(() => {
        collectSoon = undefined;
        Bun.gc(false);
      }, 0);
      return;
  }
};
