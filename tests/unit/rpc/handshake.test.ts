// Handshake: mutual authentication, refusal of a wrong network key (both directions) or an
// unexpected node id with no half-admitted peer, refusal of a peer of another protocol version
// (both directions, and a version-1 node) with one line on each side, the handshake timeout,
// and encryption on the wire (a capturing proxy sees no plaintext and no node ids).
import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createServer, connect as netConnect, type Socket as NetSocket } from "node:net";
import { createHmac } from "node:crypto";
import { PROTOCOL_VERSION, RPC_ERR, RpcError, type RpcNode } from "../../../src/rpc/rpc.ts";
import { captureStderr, collect, dec, enc, makeKey, NETWORK_KEY, startNode, waitFor } from "./helpers.ts";

const nodes: RpcNode[] = [];
async function node(extra: Parameters<typeof startNode>[0] = {}): Promise<RpcNode> {
  const n = await startNode(extra);
  nodes.push(n);
  return n;
}
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

function events(n: RpcNode): string[] {
  const seen: string[] = [];
  n.on("peer-up", (id) => seen.push(`up:${id}`));
  n.on("peer-down", (id) => seen.push(`down:${id}`));
  return seen;
}

/** A raw TCP client for feeding a node bytes that no Bunker node would send. */
async function rawClient(port: number): Promise<{ sock: NetSocket; closed: Promise<number> }> {
  const sock = netConnect(port, "127.0.0.1");
  const opened = Date.now();
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", () => resolve());
    sock.once("error", reject);
  });
  sock.on("error", () => {});
  sock.on("data", () => {});
  const closed = new Promise<number>((resolve) => sock.once("close", () => resolve(Date.now() - opened)));
  return { sock, closed };
}

describe("handshake", () => {
  test("two nodes authenticate each other and report the peer's id", async () => {
    const a = await node();
    const b = await node();
    const aEvents = events(a);
    const bEvents = events(b);
    await a.connect(b.id, "127.0.0.1", b.port);
    await waitFor(() => b.isConnected(a.id), 2000, "b to admit a");
    expect(a.peers()).toEqual([b.id]);
    expect(b.peers()).toEqual([a.id]);
    expect(aEvents).toEqual([`up:${b.id}`]);
    expect(bEvents).toEqual([`up:${a.id}`]);
    b.handle("whoami", async (req) => ({ payload: enc(req.from) }));
    expect(dec((await a.call(b.id, "whoami", new Uint8Array(0))).payload)).toBe(a.id);
    // connect() is idempotent.
    await a.connect(b.id, "127.0.0.1", b.port);
    expect(a.peers()).toEqual([b.id]);
  });

  for (const direction of ["a dials b", "b dials a"]) {
    test(`a wrong network key is refused (${direction}), with the one-line log`, async () => {
      const a = await node();
      const b = await node({ networkKey: new Uint8Array(randomBytes(32)) });
      const [dialer, listener] = direction === "a dials b" ? [a, b] : [b, a];
      const dialerEvents = events(dialer);
      const listenerEvents = events(listener);
      const { result, output } = await captureStderr(async () => {
        const err = await dialer.connect(listener.id, "127.0.0.1", listener.port).catch((e: unknown) => e);
        await Bun.sleep(50); // let the listener's side finish logging and closing
        return err;
      });
      expect(result).toBeInstanceOf(RpcError);
      expect((result as RpcError).code).toBe(RPC_ERR.handshake);
      expect((result as RpcError).message).toMatch(/wrong rpc_secret/);
      const lines = output.split("\n").filter((l) => l.includes("refused connection from"));
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(/rpc: refused connection from 127\.0\.0\.1:\d+: wrong rpc_secret \(network key\)$/);
      // Never half-admitted: neither side saw the other.
      expect(dialer.peers()).toEqual([]);
      expect(listener.peers()).toEqual([]);
      expect(dialerEvents).toEqual([]);
      expect(listenerEvents).toEqual([]);
      await expect(dialer.call(listener.id, "x", new Uint8Array(0))).rejects.toMatchObject({ code: RPC_ERR.notConnected });
    });
  }

  test("a dialer expecting another node id is refused; nobody is admitted", async () => {
    const a = await node();
    const b = await node();
    const bEvents = events(b);
    const someoneElse = makeKey().id;
    const { result, output } = await captureStderr(async () => {
      const err = await a.connect(someoneElse, "127.0.0.1", b.port).catch((e: unknown) => e);
      await Bun.sleep(50);
      return err;
    });
    expect(result).toBeInstanceOf(RpcError);
    expect((result as RpcError).code).toBe(RPC_ERR.handshake);
    expect(output).toMatch(new RegExp(`refused connection from 127\\.0\\.0\\.1:\\d+: dialer expects node ${someoneElse}`));
    expect(a.peers()).toEqual([]);
    expect(b.peers()).toEqual([]);
    expect(bEvents).toEqual([]);
    expect(a.isConnected(someoneElse)).toBe(false);
  });

  test("garbage instead of a handshake is refused as a wrong key and the socket closed", async () => {
    const b = await node();
    const { output } = await captureStderr(async () => {
      const { sock, closed } = await rawClient(b.port);
      sock.write(randomBytes(64));
      expect(await closed).toBeLessThan(3000);
    });
    expect(output).toMatch(/refused connection from 127\.0\.0\.1:\d+: wrong rpc_secret \(network key\)/);
    expect(b.peers()).toEqual([]);
  });

  test("a silent client is cut off after the handshake timeout", async () => {
    const b = await node({ handshakeTimeoutMs: 300 });
    const { output } = await captureStderr(async () => {
      const { closed } = await rawClient(b.port);
      const after = await closed;
      expect(after).toBeGreaterThanOrEqual(250);
      expect(after).toBeLessThan(3000);
    });
    expect(output).toMatch(/refused connection from .*: handshake timed out after 300 ms/);
  });

  test("traffic is encrypted: a capturing proxy sees no plaintext and no node id", async () => {
    const a = await node();
    const b = await node();
    const MARKER = "PLAINTEXT-MARKER-7f3a9c";
    b.handle(`endpoint-${MARKER}`, async (req) => ({
      payload: enc(`reply ${MARKER} to ${dec(req.payload)}`),
      body: (async function* () {
        yield enc(MARKER.repeat(1000));
        if (req.body) for await (const chunk of req.body) yield chunk;
      })(),
    }));
    const captured: Buffer[] = [];
    const proxy = createServer((client) => {
      const upstream = netConnect(b.port, "127.0.0.1");
      client.on("data", (d) => {
        captured.push(Buffer.from(d));
        upstream.write(d);
      });
      upstream.on("data", (d) => {
        captured.push(Buffer.from(d));
        client.write(d);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("close", end);
      upstream.on("close", end);
      client.on("error", end);
      upstream.on("error", end);
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", () => resolve()));
    const proxyPort = (proxy.address() as { port: number }).port;
    try {
      await a.connect(b.id, "127.0.0.1", proxyPort);
      const reply = await a.call(b.id, `endpoint-${MARKER}`, enc(`request ${MARKER}`), {
        body: (async function* () {
          yield enc(MARKER.repeat(5000));
        })(),
      });
      expect(dec(reply.payload)).toBe(`reply ${MARKER} to request ${MARKER}`);
      const body = dec(await collect(reply.body!));
      expect(body).toBe(MARKER.repeat(1000) + MARKER.repeat(5000));
      const wire = Buffer.concat(captured);
      expect(wire.length).toBeGreaterThan(MARKER.length * 6000);
      expect(wire.includes(Buffer.from(MARKER))).toBe(false);
      // Identities travel encrypted too.
      for (const id of [a.id, b.id]) {
        expect(wire.includes(Buffer.from(id, "hex"))).toBe(false);
        expect(wire.includes(Buffer.from(id))).toBe(false);
      }
    } finally {
      proxy.close();
    }
  });

  describe("protocol version", () => {
    const refusals = (output: string, dir: "from" | "to") => output.split("\n").filter((l) => l.includes(`refused connection ${dir}`));

    test(`this release speaks version ${PROTOCOL_VERSION}; two nodes of the same version connect`, async () => {
      expect(PROTOCOL_VERSION).toBe(4);
      const a = await node();
      const b = await node();
      await a.connect(b.id, "127.0.0.1", b.port);
      await waitFor(() => b.isConnected(a.id), 2000, "b to admit a");
      expect(a.peers()).toEqual([b.id]);
    });

    for (const direction of ["the newer node dials", "the older node dials"]) {
      test(`a peer of another version is refused (${direction}), one line on each side naming both versions`, async () => {
        const current = await node();
        const newer = await node({ protocolVersion: PROTOCOL_VERSION + 1 });
        const [dialer, listener] = direction === "the newer node dials" ? [newer, current] : [current, newer];
        const dialerVersion = dialer === newer ? PROTOCOL_VERSION + 1 : PROTOCOL_VERSION;
        const listenerVersion = listener === newer ? PROTOCOL_VERSION + 1 : PROTOCOL_VERSION;
        const dialerEvents = events(dialer);
        const listenerEvents = events(listener);
        const { result, output } = await captureStderr(async () => {
          // Redialed like the cluster does: still one line per side within the log interval.
          const errors: unknown[] = [];
          for (let i = 0; i < 3; i++) errors.push(await dialer.connect(listener.id, "127.0.0.1", listener.port).catch((e: unknown) => e));
          await Bun.sleep(50);
          return errors;
        });
        for (const err of result) {
          expect(err).toBeInstanceOf(RpcError);
          expect((err as RpcError).code).toBe(RPC_ERR.handshake);
          expect((err as RpcError).message).toContain(`peer speaks RPC protocol version ${listenerVersion}, this node speaks version ${dialerVersion}`);
        }
        const listenerLines = refusals(output, "from");
        expect(listenerLines.length).toBe(1);
        expect(listenerLines[0]).toMatch(
          new RegExp(`rpc: refused connection from 127\\.0\\.0\\.1:\\d+: peer speaks RPC protocol version ${dialerVersion}, this node speaks version ${listenerVersion} `),
        );
        const dialerLines = refusals(output, "to");
        expect(dialerLines.length).toBe(1);
        expect(dialerLines[0]).toContain(`rpc: refused connection to 127.0.0.1:${listener.port}: peer speaks RPC protocol version ${listenerVersion}, this node speaks version ${dialerVersion}`);
        // Not mistaken for a wrong key, and nobody admitted.
        expect(output).not.toContain("wrong rpc_secret");
        expect(dialer.peers()).toEqual([]);
        expect(listener.peers()).toEqual([]);
        expect(dialerEvents).toEqual([]);
        expect(listenerEvents).toEqual([]);
      });
    }

    test("a version-1 node (no version header) is recognised by its hello and refused as such", async () => {
      const b = await node();
      const { output } = await captureStderr(async () => {
        const { sock, closed } = await rawClient(b.port);
        // Version 1's message 1: A | HMAC(K, "bunker-rpc/1 hello" | A).
        const a = randomBytes(32);
        sock.write(Buffer.concat([a, createHmac("sha256", NETWORK_KEY).update("bunker-rpc/1 hello").update(a).digest()]));
        expect(await closed).toBeLessThan(3000);
      });
      expect(output).toMatch(
        new RegExp(`refused connection from 127\\.0\\.0\\.1:\\d+: peer speaks RPC protocol version 1, this node speaks version ${PROTOCOL_VERSION} `),
      );
      expect(output).not.toContain("wrong rpc_secret");
      expect(b.peers()).toEqual([]);
    });
  });
});
