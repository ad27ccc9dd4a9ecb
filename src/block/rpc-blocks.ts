// Blocks on other nodes, reached over RPC: block bodies travel as streamed RPC bodies (many
// small frames), never as one large message.
import { decodeJson, encodeJson, PRIO_BACKGROUND, PRIO_HIGH, type RpcNode } from "../rpc/rpc";
import type { RemoteBlocks } from "./manager";
import type { LocalBlockStore } from "./store";
import { BufferPool } from "../util/buffer-pool";

/** Time to store or fetch one block on a peer. */
export const BLOCK_CALL_TIMEOUT_MS = 60_000;
/** Size of the pieces a block is streamed in. */
const BLOCK_PIECE = 64 * 1024;

const EP_PUT = "block/put";
const EP_GET = "block/get";
const EP_HAS = "block/has";

async function* pieces(data: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += BLOCK_PIECE) yield data.subarray(off, Math.min(data.length, off + BLOCK_PIECE));
}

async function collect(body: AsyncIterable<Uint8Array> | undefined, size: number, into?: Uint8Array): Promise<Uint8Array> {
  const out = into ? into.subarray(0, size) : new Uint8Array(size);
  let fill = 0;
  if (body) {
    for await (const chunk of body) {
      if (fill + chunk.length > size) throw new Error(`block body longer than announced (${size} bytes)`);
      out.set(chunk, fill);
      fill += chunk.length;
    }
  }
  if (fill !== size) throw new Error(`block body cut short: ${fill} of ${size} bytes`);
  return out;
}

export class RpcBlocks implements RemoteBlocks {
  constructor(private readonly rpc: RpcNode) {}

  async put(node: string, hashHex: string, data: Uint8Array, compressed: boolean): Promise<void> {
    await this.rpc.call(node, EP_PUT, encodeJson({ hash: hashHex, compressed, size: data.length }), {
      priority: PRIO_HIGH,
      timeoutMs: BLOCK_CALL_TIMEOUT_MS,
      body: pieces(data),
    });
  }

  async has(node: string, hashHex: string): Promise<boolean> {
    const reply = await this.rpc.call(node, EP_HAS, encodeJson({ hash: hashHex }), { priority: PRIO_BACKGROUND, timeoutMs: BLOCK_CALL_TIMEOUT_MS });
    return decodeJson<{ found: boolean }>(reply.payload).found;
  }

  async get(node: string, hashHex: string): Promise<{ data: Uint8Array; compressed: boolean } | null> {
    const reply = await this.rpc.call(node, EP_GET, encodeJson({ hash: hashHex }), { priority: PRIO_HIGH, timeoutMs: BLOCK_CALL_TIMEOUT_MS });
    const head = decodeJson<{ found: boolean; compressed: boolean; size: number }>(reply.payload);
    if (!head.found) return null;
    return { data: await collect(reply.body, head.size), compressed: head.compressed };
  }
}

/** Free block buffers kept for blocks received from peers. */
const RECEIVE_BUFFERS_KEPT = 16;

/** Largest block body a peer may send (bounds the memory of one put). */
export const MAX_REMOTE_BLOCK = 64 * 1024 * 1024 + 1024;

/** Serves this node's block store to its peers; `write` is the manager's locked local write. */
export function serveBlocks(
  rpc: RpcNode,
  store: LocalBlockStore,
  write: (hash: string, data: Uint8Array, compressed: boolean) => Promise<void>,
  blockSize: number,
): void {
  // Received blocks land in reused buffers: fresh memory for every block (page faults, zeroing)
  // cost more than receiving it.
  const buffers = new BufferPool(blockSize, RECEIVE_BUFFERS_KEPT);
  rpc.handle(EP_PUT, async ({ payload, body }) => {
    const head = decodeJson<{ hash: string; compressed: boolean; size: number }>(payload);
    if (!Number.isSafeInteger(head.size) || head.size < 0 || head.size > MAX_REMOTE_BLOCK) throw new Error(`refusing a block of ${head.size} bytes`);
    const buffer = head.size <= buffers.size ? buffers.take() : undefined;
    try {
      // The store has written (or refused) the bytes once write() settles: the buffer is free.
      await write(head.hash, await collect(body, head.size, buffer), head.compressed);
    } finally {
      if (buffer) buffers.give(buffer);
    }
    return { payload: encodeJson({}) };
  });
  rpc.handle(EP_HAS, async ({ payload }) => {
    const { hash } = decodeJson<{ hash: string }>(payload);
    return { payload: encodeJson({ found: await store.has(hash) }) };
  });
  rpc.handle(EP_GET, async ({ payload }) => {
    const { hash } = decodeJson<{ hash: string }>(payload);
    const stored = await store.read(hash);
    if (!stored) return { payload: encodeJson({ found: false, compressed: false, size: 0 }) };
    return {
      payload: encodeJson({ found: true, compressed: stored.compressed, size: stored.data.length }),
      body: pieces(stored.data),
    };
  });
}
