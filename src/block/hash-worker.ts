// Worker side of HashPool (hash.ts): BLAKE3 of the byte range it is sent, and the buffer handed
// back; MD5 streams fed block by block. Its only state is the open MD5 streams, so a crash loses
// the jobs in flight and those streams (their requests fail).
import { hash } from "blake3-wasm/dist/index.js";
import { MD5_STREAMS_PER_WORKER, type HashReply, type HashRequest } from "./hash.ts";

declare const self: Worker;

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

function reply(msg: HashReply): void {
  // A SharedArrayBuffer is shared, not owned: only a plain ArrayBuffer travels back by transfer.
  const buf = "buf" in msg ? msg.buf : undefined;
  self.postMessage(msg, buf instanceof ArrayBuffer ? [buf] : []);
}

self.onmessage = (ev: MessageEvent<HashRequest>) => {
  const msg = ev.data;
  switch (msg.kind) {
    case "hash": {
      const { id, buf, offset, length } = msg;
      try {
        // blake3-wasm's one-shot hash owns no hasher object, so nothing can leak if it throws.
        const digest = hash(new Uint8Array(buf, offset, length)) as Buffer; // Buffer: no encoding asked
        reply({ id, hash: new Uint8Array(digest), buf });
      } catch (err) {
        reply({ id, error: String(err), buf });
      }
      return;
    }
    case "md5-update": {
      try {
        md5Of(msg.md5).update(new Uint8Array(msg.buf, msg.offset, msg.length));
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
  }
};
