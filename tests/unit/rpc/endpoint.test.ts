// Typed endpoints (src/rpc/endpoint.ts): a request that does not match its endpoint's schema is
// answered with a bad-request error naming the endpoint and the first failing path, and the
// handler never runs; a response that does not match makes the call reject with bad-response.
// Two real nodes on loopback; the "peer of another release" is a raw handler or a raw call.
import { afterEach, describe, expect, test } from "bun:test";
import { Type } from "@sinclair/typebox";
import { call, callWithBody, endpoint, handle, WithBody } from "../../../src/rpc/endpoint.ts";
import { encodeJson, RPC_ERR, RpcError, type RpcNode } from "../../../src/rpc/rpc.ts";
import { BlockHashSchema } from "../../../src/util/ids.ts";
import { captureStderr, collect, dec, enc, startPair } from "./helpers.ts";

const nodes: RpcNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
});

const ECHO = endpoint(
  "test/echo",
  Type.Object({ hash: BlockHashSchema, n: Type.Integer({ minimum: 0 }), tags: Type.Optional(Type.Array(Type.String())) }),
  Type.Object({ hash: BlockHashSchema, doubled: Type.Integer() }),
);
const H = "ab".repeat(32);

async function rejection(p: Promise<unknown>): Promise<RpcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RpcError);
  return err as RpcError;
}

describe("typed endpoints", () => {
  test("a valid request reaches the handler and its typed answer comes back", async () => {
    const [a, b] = await startPair(nodes);
    const seen: string[] = [];
    handle(b, ECHO, async (req, { from }) => {
      seen.push(from);
      return { hash: req.hash, doubled: req.n * 2 };
    });
    expect(await call(a, b.id, ECHO, { hash: H as never, n: 21 })).toEqual({ hash: H as never, doubled: 42 });
    expect(seen).toEqual([a.id]);
  });

  const malformed: [string, unknown, RegExp][] = [
    ["a field of the wrong type", { hash: H, n: "21" }, /endpoint 'test\/echo': invalid request: \/n: Expected integer \(got "21"\)/],
    ["a missing field", { n: 1 }, /endpoint 'test\/echo': invalid request: \/hash: Expected required property/],
    ["a malformed block hash", { hash: "../../etc/passwd", n: 1 }, /invalid request: \/hash: Expected string to match '\^\[0-9a-f\]\{64\}\$' \(got "\.\.\/\.\.\/etc\/passwd"\)/],
    ["an upper-case block hash", { hash: H.toUpperCase(), n: 1 }, /invalid request: \/hash: /],
    ["a nested element of the wrong type", { hash: H, n: 1, tags: ["x", 5] }, /invalid request: \/tags\/1: Expected string/],
    ["not an object", [1, 2], /invalid request: \/: Expected object/],
  ];
  for (const [what, payload, message] of malformed) {
    test(`a request with ${what} is refused with bad-request; the handler does not run`, async () => {
      const [a, b] = await startPair(nodes);
      let ran = 0;
      handle(b, ECHO, async (req) => {
        ran++;
        return { hash: req.hash, doubled: 0 };
      });
      const { result: err, output } = await captureStderr(() => rejection(a.call(b.id, ECHO.name, encodeJson(payload))));
      expect(err.code).toBe(RPC_ERR.badRequest);
      expect(err.remote).toBe(true);
      expect(err.message).toMatch(message);
      expect(ran).toBe(0);
      // The callee says so once, naming the caller.
      expect(output).toContain(`refused a request from node ${a.id.slice(0, 16)}: endpoint 'test/echo': invalid request`);
    });
  }

  test("a payload that is not JSON is refused with bad-request", async () => {
    const [a, b] = await startPair(nodes);
    let ran = 0;
    handle(b, ECHO, async () => (ran++, { hash: H as never, doubled: 0 }));
    const { result: err } = await captureStderr(() => rejection(a.call(b.id, ECHO.name, enc("{not json"))));
    expect(err.code).toBe(RPC_ERR.badRequest);
    expect(err.message).toMatch(/endpoint 'test\/echo': request is not JSON/);
    expect(ran).toBe(0);
  });

  test("malformed requests from one peer and endpoint are logged once per interval", async () => {
    const [a, b] = await startPair(nodes);
    handle(b, ECHO, async (req) => ({ hash: req.hash, doubled: 0 }));
    const { output } = await captureStderr(async () => {
      for (let i = 0; i < 5; i++) await rejection(a.call(b.id, ECHO.name, encodeJson({ n: i })));
    });
    expect(output.split("\n").filter((l) => l.includes("refused a request from node")).length).toBe(1);
  });

  test("a malformed response makes the call reject with bad-response naming the endpoint and path", async () => {
    const [a, b] = await startPair(nodes);
    // A peer of another release answers with another shape.
    b.handle(ECHO.name, async () => ({ payload: encodeJson({ hash: H, doubled: "twice" }) }));
    const err = await rejection(call(a, b.id, ECHO, { hash: H as never, n: 1 }));
    expect(err.code).toBe(RPC_ERR.badResponse);
    expect(err.message).toMatch(/endpoint 'test\/echo': invalid response: \/doubled: Expected integer/);
  });

  test("a response that is not JSON makes the call reject with bad-response", async () => {
    const [a, b] = await startPair(nodes);
    b.handle(ECHO.name, async () => ({ payload: enc("<xml/>") }));
    const err = await rejection(call(a, b.id, ECHO, { hash: H as never, n: 1 }));
    expect(err.code).toBe(RPC_ERR.badResponse);
    expect(err.message).toMatch(/endpoint 'test\/echo': response is not JSON/);
  });

  test("a call to this node itself is checked the same way", async () => {
    const [a] = await startPair(nodes);
    let ran = 0;
    handle(a, ECHO, async (req) => (ran++, { hash: req.hash, doubled: 0 }));
    const { result: err } = await captureStderr(() => rejection(a.call(a.id, ECHO.name, encodeJson({ hash: "x", n: 1 }))));
    expect(err.code).toBe(RPC_ERR.badRequest);
    expect(ran).toBe(0);
    expect(await call(a, a.id, ECHO, { hash: H as never, n: 2 })).toEqual({ hash: H as never, doubled: 0 });
  });

  test("a streamed body travels beside its checked head", async () => {
    const [a, b] = await startPair(nodes);
    const STREAM = endpoint("test/stream", Type.Object({}), Type.Object({ size: Type.Integer() }));
    handle(b, STREAM, async () =>
      new WithBody({ size: 10 }, (async function* () {
        yield enc("0123456789");
      })()),
    );
    const reply = await callWithBody(a, b.id, STREAM, {});
    expect(reply.value).toEqual({ size: 10 });
    expect(dec(await collect(reply.body!))).toBe("0123456789");
  });
});
