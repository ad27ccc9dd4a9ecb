// Worker side of Blake3Pool (hash.ts): hashes the byte range it is sent and hands the buffer back.
// It keeps no state between jobs, so a crash loses only the jobs in flight.
import { hash } from "blake3-wasm/dist/index.js";
import type { HashReply, HashRequest } from "./hash.ts";

declare const self: Worker;

self.onmessage = (ev: MessageEvent<HashRequest>) => {
  const { id, buf, offset, length } = ev.data;
  let reply: HashReply;
  try {
    // blake3-wasm's one-shot hash owns no hasher object, so nothing can leak if it throws.
    const digest = hash(new Uint8Array(buf, offset, length)) as Buffer; // Buffer: no encoding asked
    reply = { id, hash: new Uint8Array(digest), buf };
  } catch (err) {
    reply = { id, error: String(err), buf };
  }
  // A SharedArrayBuffer is shared, not owned: only a plain ArrayBuffer travels back by transfer.
  self.postMessage(reply, buf instanceof ArrayBuffer ? [buf] : []);
};
