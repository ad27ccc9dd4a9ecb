// A Bunker RPC node in its own process, for tests that need a second core (throughput) or a
// peer that can be frozen (SIGSTOP) or killed (SIGKILL) mid-stream.
// Input (env): RPC_TEST_KEY = node key as PKCS#8 DER hex, RPC_TEST_NETWORK_KEY = 32 bytes hex.
// Output: one JSON line {"id", "port", "rawPort"} on stdout once listening. rawPort is a plain
// TCP sink (no RPC, no encryption) that answers one byte per RAW_ACK_BYTES received: the
// loopback ceiling that throughput tests compare against.
import { createPrivateKey, createPublicKey } from "node:crypto";
import { RpcNode, decodeJson, encodeJson } from "../../../src/rpc/rpc.ts";
import { fastBody, hashBody } from "./helpers.ts";

const privateKey = createPrivateKey({ key: Buffer.from(process.env.RPC_TEST_KEY!, "hex"), format: "der", type: "pkcs8" });
const publicKey = createPublicKey(privateKey);
const der = publicKey.export({ format: "der", type: "spki" });
const id = der.subarray(der.length - 32).toString("hex");

const node = new RpcNode({
  nodeKey: { id, privateKey, publicKey },
  networkKey: new Uint8Array(Buffer.from(process.env.RPC_TEST_NETWORK_KEY!, "hex")),
  bindHost: "127.0.0.1",
  bindPort: 0,
});

node.handle("echo", async (req) => ({ payload: req.payload }));

// Consumes the request body; answers its size and hash.
node.handle("sink", async (req) => ({ payload: encodeJson(await hashBody(req.body!)) }));

// Consumes the request body as fast as possible; answers its size.
node.handle("count", async (req) => {
  let bytes = 0;
  for await (const chunk of req.body!) bytes += chunk.length;
  return { payload: encodeJson({ bytes }) };
});

// Streams {bytes} bytes in {chunk}-byte chunks.
node.handle("source", async (req) => {
  const { bytes, chunk } = decodeJson<{ bytes: number; chunk: number }>(req.payload);
  return { payload: encodeJson({ bytes }), body: fastBody(bytes, chunk) };
});

// Never answers; ends when the caller cancels (or the connection goes).
node.handle(
  "hold",
  (req) =>
    new Promise((resolve) => {
      req.signal.addEventListener("abort", () => resolve({ payload: new Uint8Array(0) }));
    }),
);

const RAW_ACK_BYTES = 256 * 2 ** 20;
let rawCount = 0;
const raw = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open: (socket) => void socket.setNoDelay(true),
    data: (socket, data) => {
      rawCount += data.length;
      while (rawCount >= RAW_ACK_BYTES) {
        rawCount -= RAW_ACK_BYTES;
        socket.write("k");
      }
    },
  },
});

await node.listen();
process.stdout.write(JSON.stringify({ id, port: node.port, rawPort: raw.port }) + "\n");

// A polite stop (SIGTERM) closes the node and exits normally, so profilers can write out.
process.on("SIGTERM", () => {
  void node.close().then(() => process.exit(0));
});
