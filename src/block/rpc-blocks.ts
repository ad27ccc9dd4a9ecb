// Blocks on other nodes, reached over RPC: block bodies travel as streamed RPC bodies (many
// small frames), never as one large message. Only the small JSON heads are checked against the
// endpoints' schemas (rpc/endpoint.ts): a peer's block hash is refused there, before any handler
// or the store sees it.
import { Type } from "@sinclair/typebox";
import { callWithBody, call, endpoint, handle, WithBody } from "../rpc/endpoint";
import { PRIO_BACKGROUND, PRIO_HIGH, type RpcNode } from "../rpc/rpc";
import type { RemoteBlocks } from "./manager";
import type { LocalBlockStore } from "./store";
import { BufferPool } from "../util/buffer-pool";
import { BlockHashSchema, type BlockHash } from "../util/ids";

/** Time to store or fetch one block on a peer. */
export const BLOCK_CALL_TIMEOUT_MS = 60_000;
/** Size of the pieces a block is streamed in. */
const BLOCK_PIECE = 64 * 1024;

/** Largest block body a peer may send (bounds the memory of one put). */
export const MAX_REMOTE_BLOCK = 64 * 1024 * 1024 + 1024;

const BlockSizeSchema = Type.Integer({ minimum: 0, maximum: MAX_REMOTE_BLOCK });
/** The body that follows holds `size` bytes, stored as they are (zstd frame if `compressed`). */
const EP_PUT = endpoint("block/put", Type.Object({ hash: BlockHashSchema, compressed: Type.Boolean(), size: BlockSizeSchema }), Type.Object({}));
/** When found, the body that follows holds the stored bytes. */
const EP_GET = endpoint(
  "block/get",
  Type.Object({ hash: BlockHashSchema }),
  Type.Object({ found: Type.Boolean(), compressed: Type.Boolean(), size: BlockSizeSchema }),
);
const EP_HAS = endpoint("block/has", Type.Object({ hash: BlockHashSchema }), Type.Object({ found: Type.Boolean() }));

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

  async put(node: string, hashHex: BlockHash, data: Uint8Array, compressed: boolean, signal?: AbortSignal): Promise<void> {
    // The manager aborts a copy it gave up on (a silent peer): its queued frames are dropped
    // and `data` is no longer read.
    await call(this.rpc, node, EP_PUT, { hash: hashHex, compressed, size: data.length }, {
      priority: PRIO_HIGH,
      timeoutMs: BLOCK_CALL_TIMEOUT_MS,
      body: pieces(data),
      signal,
    });
  }

  async has(node: string, hashHex: BlockHash): Promise<boolean> {
    return (await call(this.rpc, node, EP_HAS, { hash: hashHex }, { priority: PRIO_BACKGROUND, timeoutMs: BLOCK_CALL_TIMEOUT_MS })).found;
  }

  async get(node: string, hashHex: BlockHash): Promise<{ data: Uint8Array; compressed: boolean } | null> {
    const reply = await callWithBody(this.rpc, node, EP_GET, { hash: hashHex }, { priority: PRIO_HIGH, timeoutMs: BLOCK_CALL_TIMEOUT_MS });
    const head = reply.value;
    if (!head.found) return null;
    return { data: await collect(reply.body, head.size), compressed: head.compressed };
  }
}

/** Free block buffers kept for blocks received from peers. */
const RECEIVE_BUFFERS_KEPT = 16;

/** Serves this node's block store to its peers; `write` is the manager's locked local write. */
export function serveBlocks(
  rpc: RpcNode,
  store: LocalBlockStore,
  write: (hash: BlockHash, data: Uint8Array, compressed: boolean) => Promise<void>,
  blockSize: number,
): void {
  // Received blocks land in reused buffers: fresh memory for every block (page faults, zeroing)
  // cost more than receiving it.
  const buffers = new BufferPool(blockSize, RECEIVE_BUFFERS_KEPT);
  handle(rpc, EP_PUT, async (head, { body }) => {
    const buffer = head.size <= buffers.size ? buffers.take() : undefined;
    try {
      // The store has written (or refused) the bytes once write() settles: the buffer is free.
      await write(head.hash, await collect(body, head.size, buffer), head.compressed);
    } finally {
      if (buffer) buffers.give(buffer);
    }
    return {};
  });
  handle(rpc, EP_HAS, async ({ hash }) => ({ found: await store.has(hash) }));
  handle(rpc, EP_GET, async ({ hash }) => {
    const stored = await store.read(hash);
    if (!stored) return { found: false, compressed: false, size: 0 };
    return new WithBody({ found: true, compressed: stored.compressed, size: stored.data.length }, pieces(stored.data));
  });
}
