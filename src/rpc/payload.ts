// JSON payload helpers: metadata travels as JSON in a call's payload; bulk data goes in bodies.
import { RPC_ERR, RpcError } from "./errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeJson(value: unknown): Uint8Array {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError("encodeJson: value has no JSON form");
  return encoder.encode(text);
}

export function decodeJson<T = unknown>(bytes: Uint8Array): T {
  try {
    return JSON.parse(decoder.decode(bytes)) as T;
  } catch (err) {
    throw new RpcError(`payload is not valid JSON: ${(err as Error).message}`, RPC_ERR.protocol);
  }
}
