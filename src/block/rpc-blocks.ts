// Blocks on other nodes, reached over RPC: block bodies travel as streamed RPC bodies (many
// small frames), never as one large message. Only the small JSON heads are checked against the
// endpoints' schemas (rpc/endpoint.ts): a peer's block hash is refused there, before any handler
// or the store sees it.
//
// Memory: a block received lands in memory leased once its size is known (from the node's whole
// budget for a peer's put, which always has room left by this node's own requests: manager.ts
// PEER_RESERVE_SHARE), and is freed as soon as it is stored. Received pieces are copied out and
// handed back at once (chunkDone: rpc/connection.ts lends them).
import { Type } from "@sinclair/typebox";
import { callWithBody, call, endpoint, handle, WithBody } from "../rpc/endpoint";
import { PRIO_BACKGROUND, PRIO_HIGH, type RpcNode } from "../rpc/rpc";
import type { RemoteBlocks } from "./manager";
import type { LocalBlockStore } from "./store";
import { chunkDone, type BlockRoom, type BufferPool } from "../util/buffer-pool";
import type { MemoryBudget, Release } from "../util/memory-budget";
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

/**
 * A block read for a peer, sent in pieces; its lease ends once the last piece is queued (or the
 * stream stopped). Its memory is left to the collector: queued frames may still point into it
 * (at most MAX_SEND_QUEUE_BYTES of them per connection, rpc/send-queue.ts).
 */
async function* leasedPieces(data: Uint8Array, release: Release): AsyncGenerator<Uint8Array> {
  try {
    yield* pieces(data);
  } finally {
    release();
  }
}

/** Reads a body of `size` bytes into memory of `pool`, given back here if the body fails. */
async function collect(body: AsyncIterable<Uint8Array> | undefined, size: number, pool: BufferPool): Promise<Uint8Array> {
  const out = pool.takeFor(size);
  let fill = 0;
  try {
    if (body) {
      for await (const chunk of body) {
        if (fill + chunk.length > size) throw new Error(`block body longer than announced (${size} bytes)`);
        out.set(chunk, fill);
        fill += chunk.length;
        chunkDone(chunk);
      }
    }
    if (fill !== size) throw new Error(`block body cut short: ${fill} of ${size} bytes`);
  } catch (err) {
    pool.giveOrFree(out);
    throw err;
  }
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

  async get(node: string, hashHex: BlockHash, room: BlockRoom): Promise<{ data: Uint8Array; compressed: boolean; release: Release } | null> {
    const reply = await callWithBody(this.rpc, node, EP_GET, { hash: hashHex }, { priority: PRIO_HIGH, timeoutMs: BLOCK_CALL_TIMEOUT_MS });
    const head = reply.value;
    if (!head.found) return null;
    // Until room is found the peer's frames wait in the stream's window (rpc/inbound-body.ts).
    const release = await room.lease(head.size);
    try {
      return { data: await collect(reply.body, head.size, room.pool), compressed: head.compressed, release };
    } catch (err) {
      release();
      throw err;
    }
  }
}

/** Serves this node's block store to its peers; `write` is the manager's locked local write. */
export function serveBlocks(
  rpc: RpcNode,
  store: LocalBlockStore,
  write: (hash: BlockHash, data: Uint8Array, compressed: boolean) => Promise<void>,
  /** The node's whole budget (not a share: see the header), and its pool of block buffers. */
  budget: MemoryBudget,
  pool: BufferPool,
): void {
  const room = (signal: AbortSignal): BlockRoom => ({ lease: (bytes) => budget.acquireUpTo(bytes, signal), pool });
  handle(rpc, EP_PUT, async (head, { body, signal }) => {
    // Waiting holds nothing: the sender's frames wait in the stream's window meanwhile.
    const release = await room(signal).lease(head.size);
    let data: Uint8Array | undefined;
    try {
      data = await collect(body, head.size, pool);
      // The store has written (or refused) the bytes once write() settles: the buffer is free.
      await write(head.hash, data, head.compressed);
    } finally {
      release();
      if (data) pool.giveOrFree(data);
    }
    return {};
  });
  handle(rpc, EP_HAS, async ({ hash }) => ({ found: await store.has(hash) }));
  handle(rpc, EP_GET, async ({ hash }, { signal }) => {
    const stored = await store.readLeased(hash, room(signal));
    if (!stored) return { found: false, compressed: false, size: 0 };
    return new WithBody({ found: true, compressed: stored.compressed, size: stored.data.length }, leasedPieces(stored.data, stored.release));
  });
}
