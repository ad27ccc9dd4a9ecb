// Typed RPC endpoints: an endpoint is a name with a request and a response schema (TypeBox,
// compiled once at module load), and `handle` / `call` wrap RpcNode so that every message from a
// peer is checked like client input before anyone reads it. A buggy or older peer cannot make a
// handler run on a malformed request: it is answered with a bad-request error naming the
// endpoint and the first failing path; a malformed response makes the call reject with a
// bad-response error the same way. Bodies (block data) stay streamed: only the JSON head is checked.
import type { Static, TSchema } from "@sinclair/typebox";
import type { NodeId } from "../util/ids.ts";
import { logger } from "../util/log.ts";
import { RateLimitedLog, suppressedNote } from "../util/rate-limited-log.ts";
import { compileValidator, type Validator } from "../util/validator.ts";
import { RPC_ERR, RpcError } from "./errors.ts";
import { decodeJson, encodeJson } from "./payload.ts";
import type { CallOpts, RpcNode } from "./rpc.ts";

const log = logger("rpc");

/**
 * A peer's malformed requests are logged once per peer and endpoint per this interval (with a
 * count of those left out): a node of a buggy release may send one per call.
 */
export const MALFORMED_REQUEST_LOG_INTERVAL_MS = 60_000;
const malformedLog = new RateLimitedLog(MALFORMED_REQUEST_LOG_INTERVAL_MS);

export interface Endpoint<Req extends TSchema, Res extends TSchema> {
  readonly name: string;
  readonly request: Validator<Static<Req>>;
  readonly response: Validator<Static<Res>>;
}

/** Defines an endpoint; call it at module load, so the schemas compile once. */
export function endpoint<Req extends TSchema, Res extends TSchema>(name: string, request: Req, response: Res): Endpoint<Req, Res> {
  return { name, request: compileValidator(request), response: compileValidator(response) };
}

/** A reply with a streamed body beside its checked head. */
export class WithBody<T> {
  constructor(
    readonly value: T,
    readonly body: AsyncIterable<Uint8Array>,
  ) {}
}

export interface HandlerContext {
  /** The calling node's id, authenticated by the handshake. */
  from: NodeId;
  body?: AsyncIterable<Uint8Array>;
  signal: AbortSignal;
}

/** Parses and checks a message; a failure is an RpcError with `code`, naming the endpoint. */
function decodeChecked<T>(name: string, what: "request" | "response", validator: Validator<T>, payload: Uint8Array, code: string): T {
  let value: unknown;
  try {
    value = decodeJson(payload);
  } catch (err) {
    throw new RpcError(`endpoint '${name}': ${what} is not JSON: ${(err as Error).message}`, code);
  }
  if (!validator.check(value)) throw new RpcError(`endpoint '${name}': invalid ${what}: ${validator.problem(value)}`, code);
  return value;
}

/**
 * Registers `handler` for `ep` on `rpc`. It runs only on a request that matches the request
 * schema; the caller of a malformed one gets RPC_ERR.badRequest. What it returns is sent as is
 * (the caller checks it).
 */
export function handle<Req extends TSchema, Res extends TSchema>(
  rpc: RpcNode,
  ep: Endpoint<Req, Res>,
  handler: (req: Static<Req>, ctx: HandlerContext) => Promise<Static<Res> | WithBody<Static<Res>>>,
): void {
  rpc.handle(ep.name, async ({ from, payload, body, signal }) => {
    let req: Static<Req>;
    try {
      req = decodeChecked(ep.name, "request", ep.request, payload, RPC_ERR.badRequest);
    } catch (err) {
      const message = (err as Error).message;
      malformedLog.note(`${from} ${ep.name}`, (suppressed) =>
        log.warn(`refused a request from node ${from.slice(0, 16)}: ${message}${suppressedNote(suppressed, `malformed '${ep.name}' requests from it`)}`),
      );
      throw err;
    }
    const out = await handler(req, { from, body, signal });
    return out instanceof WithBody ? { payload: encodeJson(out.value), body: out.body } : { payload: encodeJson(out) };
  });
}

/** Calls `ep` on `peer` and resolves with its checked response, and the body if it streamed one. */
export async function callWithBody<Req extends TSchema, Res extends TSchema>(
  rpc: RpcNode,
  peer: string,
  ep: Endpoint<Req, Res>,
  req: Static<Req>,
  opts: CallOpts = {},
): Promise<{ value: Static<Res>; body?: AsyncIterable<Uint8Array> }> {
  const reply = await rpc.call(peer, ep.name, encodeJson(req), opts);
  try {
    return { value: decodeChecked(ep.name, "response", ep.response, reply.payload, RPC_ERR.badResponse), body: reply.body };
  } catch (err) {
    // Nobody will read a body that came with a malformed head: tell the sender to stop.
    void reply.body?.[Symbol.asyncIterator]().return?.();
    throw err;
  }
}

/** Calls `ep` on `peer` and resolves with its checked response (RPC_ERR.badResponse if malformed). */
export async function call<Req extends TSchema, Res extends TSchema>(
  rpc: RpcNode,
  peer: string,
  ep: Endpoint<Req, Res>,
  req: Static<Req>,
  opts: CallOpts = {},
): Promise<Static<Res>> {
  return (await callWithBody(rpc, peer, ep, req, opts)).value;
}
