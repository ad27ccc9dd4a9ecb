// RpcError: the one error type callers of the RPC layer see, with a machine-readable code and
// whether it was raised by the remote handler (remote: true) or by the transport here.

/** Codes raised by the RPC layer itself. Remote handlers may send any other string code. */
export const RPC_ERR = {
  /** The remote handler threw (its message is the error's message). */
  remote: "remote",
  unknownEndpoint: "unknown-endpoint",
  notConnected: "not-connected",
  connectionLost: "connection-lost",
  timeout: "timeout",
  cancelled: "cancelled",
  /** A body stream made no progress for STREAM_IDLE_TIMEOUT_MS. */
  stalled: "stalled",
  /** The callee runs too many handlers on this connection. */
  busy: "busy",
  /** The peer broke the protocol; the connection was closed. */
  protocol: "protocol",
  handshake: "handshake",
  closed: "closed",
  /** A request did not match its endpoint's schema (rpc/endpoint.ts); the handler did not run. */
  badRequest: "bad-request",
  /** A response did not match its endpoint's schema (rpc/endpoint.ts). */
  badResponse: "bad-response",
} as const;

export class RpcError extends Error {
  readonly code: string;
  readonly remote: boolean;

  constructor(message: string, code: string, remote = false) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.remote = remote;
  }
}

/** Largest error message sent in an ERROR frame; longer ones are cut. */
export const MAX_ERROR_MESSAGE_BYTES = 4096;
/** A handler error's string `code` longer than this is replaced by the fallback code. */
const MAX_ERROR_CODE_LENGTH = 64;

interface WireError {
  message: string;
  code: string;
}

/** Serialises a handler's failure for an ERROR frame. A string `code` property is kept. */
export function encodeWireError(err: unknown, fallbackCode: string = RPC_ERR.remote): Uint8Array {
  const message = err instanceof Error ? err.message : String(err);
  const rawCode = (err as { code?: unknown } | null)?.code;
  const code =
    typeof rawCode === "string" && rawCode.length > 0 && rawCode.length <= MAX_ERROR_CODE_LENGTH ? rawCode : fallbackCode;
  let bytes = new TextEncoder().encode(JSON.stringify({ message, code } satisfies WireError));
  if (bytes.length > MAX_ERROR_MESSAGE_BYTES) {
    // A character can take 6 bytes once JSON-escaped; 1/8 of the bound always fits.
    const cut = message.slice(0, MAX_ERROR_MESSAGE_BYTES / 8) + "…";
    bytes = new TextEncoder().encode(JSON.stringify({ message: cut, code } satisfies WireError));
  }
  return bytes;
}

/** Rebuilds the remote error from an ERROR frame's payload; garbage still yields an RpcError. */
export function decodeWireError(payload: Uint8Array): RpcError {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(payload)) as Partial<WireError>;
    if (typeof parsed.message === "string" && typeof parsed.code === "string") {
      return new RpcError(parsed.message, parsed.code, true);
    }
  } catch {
    // fall through: an unreadable error is still an error
  }
  return new RpcError("remote error (unreadable error payload)", RPC_ERR.remote, true);
}
