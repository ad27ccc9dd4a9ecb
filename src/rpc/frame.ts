// The RPC frame: the unit that connections multiplex, and its codec (encoder plus a streaming
// decoder that accepts input split at any point and rejects malformed frames).
//
// Wire layout (big-endian), 10-byte header then payload:
//   u32 payload length (<= MAX_FRAME_PAYLOAD)
//   u32 request id      (namespace of the caller; FLAG_RESPONSE says which side that is)
//   u8  flags
//   u8  priority        (lower value = more urgent, Garage's numbering)
//   ... payload
// Frames travel inside encrypted records (box-stream.ts); this layer never sees ciphertext.
//
// Meaning of the flags, per request and direction (caller->callee or callee->caller):
//   head frames   : no BODY flag. MORE on every head frame but the last. The last head frame
//                   carries END when no body follows.
//   body frames   : BODY flag; the last one carries END (it may be empty).
//   ERROR         : payload is an error (JSON); ends this direction of the request.
//   CANCEL        : from the caller: abandon the request; from the callee: stop sending the
//                   request body (the callee no longer reads it). Empty payload.
//   CREDIT        : payload is a u32 of body bytes the sender of this frame is ready to receive
//                   (flow control for the body travelling the other way).
//   RESPONSE      : the frame travels callee -> caller, so its request id is in the receiver's
//                   namespace. Both sides allocate ids independently; this bit keeps them apart.
import { assert } from "../util/assert.ts";
import { ByteQueue } from "./byte-queue.ts";

export const FRAME_HEADER_BYTES = 10;
/** Largest payload of one frame: big bodies are cut into frames so urgent frames can interleave. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
/** Bytes of a CREDIT frame's payload (one u32). */
export const CREDIT_PAYLOAD_BYTES = 4;

export const FLAG_MORE = 0x01;
export const FLAG_END = 0x02;
export const FLAG_ERROR = 0x04;
export const FLAG_CANCEL = 0x08;
export const FLAG_RESPONSE = 0x10;
export const FLAG_BODY = 0x20;
export const FLAG_CREDIT = 0x40;
const KNOWN_FLAGS = FLAG_MORE | FLAG_END | FLAG_ERROR | FLAG_CANCEL | FLAG_RESPONSE | FLAG_BODY | FLAG_CREDIT;

/** Priorities (Garage's values): lower is more urgent; any u8 is valid on the wire. */
export const PRIO_HIGH = 0x20;
export const PRIO_NORMAL = 0x40;
export const PRIO_BACKGROUND = 0x80;
/** Priority byte written on control frames (CANCEL, CREDIT), which bypass the lanes. */
export const PRIO_CONTROL = 0x00;

const MAX_U32 = 0xffff_ffff;

export interface Frame {
  requestId: number;
  flags: number;
  priority: number;
  payload: Uint8Array;
}

export class FrameError extends Error {
  constructor(message: string) {
    super(`rpc frame: ${message}`);
    this.name = "FrameError";
  }
}

/** Checks the flag combination and payload rules; returns a reason, or null when valid. */
export function frameProblem(flags: number, payloadLength: number): string | null {
  if ((flags & ~KNOWN_FLAGS) !== 0) return `unknown flag bits 0x${flags.toString(16)}`;
  if (payloadLength > MAX_FRAME_PAYLOAD) {
    return `payload of ${payloadLength} bytes exceeds the ${MAX_FRAME_PAYLOAD}-byte maximum`;
  }
  const kinds = (flags & FLAG_ERROR ? 1 : 0) + (flags & FLAG_CANCEL ? 1 : 0) + (flags & FLAG_CREDIT ? 1 : 0);
  if (kinds > 1) return "ERROR, CANCEL and CREDIT are exclusive";
  if (kinds === 1 && (flags & (FLAG_MORE | FLAG_END | FLAG_BODY)) !== 0) {
    return "a control or error frame carries no MORE, END or BODY flag";
  }
  if (flags & FLAG_CANCEL && payloadLength !== 0) return "CANCEL frame with a payload";
  if (flags & FLAG_CREDIT && payloadLength !== CREDIT_PAYLOAD_BYTES) return "CREDIT frame payload is not 4 bytes";
  if (flags & FLAG_MORE && flags & (FLAG_BODY | FLAG_END)) return "MORE is only valid on a non-final head frame";
  return null;
}

export function encodedFrameSize(frame: Frame): number {
  return FRAME_HEADER_BYTES + frame.payload.length;
}

/** Writes the 10-byte header of `frame` into `out` at `offset`. */
export function writeFrameHeader(out: Uint8Array, offset: number, frame: Frame): void {
  const problem = frameProblem(frame.flags, frame.payload.length);
  assert(problem === null, `encoding a valid frame (${problem})`);
  assert(Number.isInteger(frame.requestId) && frame.requestId >= 0 && frame.requestId <= MAX_U32, "request id is a u32");
  assert(Number.isInteger(frame.priority) && frame.priority >= 0 && frame.priority <= 0xff, "priority is a u8");
  const view = new DataView(out.buffer, out.byteOffset + offset, FRAME_HEADER_BYTES);
  view.setUint32(0, frame.payload.length);
  view.setUint32(4, frame.requestId);
  view.setUint8(8, frame.flags);
  view.setUint8(9, frame.priority);
}

/** The whole frame as one buffer (tests and small frames; the writer avoids this copy). */
export function encodeFrame(frame: Frame): Uint8Array {
  const out = new Uint8Array(encodedFrameSize(frame));
  writeFrameHeader(out, 0, frame);
  out.set(frame.payload, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Streaming decoder: push byte chunks split anywhere, get whole frames back. After an error the
 * decoder is poisoned, because the stream position is lost and nothing after it can be trusted.
 */
export class FrameDecoder {
  private readonly queue = new ByteQueue();
  private failed: FrameError | null = null;

  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    this.queue.push(chunk);
    const frames: Frame[] = [];
    while (this.queue.length >= FRAME_HEADER_BYTES) {
      const length = this.queue.peekU32(0);
      const flags = this.queue.peekByte(8);
      const problem = frameProblem(flags, length);
      if (problem !== null) {
        this.failed = new FrameError(problem);
        throw this.failed;
      }
      if (this.queue.length < FRAME_HEADER_BYTES + length) break;
      const header = this.queue.read(FRAME_HEADER_BYTES);
      const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES);
      frames.push({
        requestId: view.getUint32(4),
        flags,
        priority: view.getUint8(9),
        payload: this.queue.read(length),
      });
    }
    return frames;
  }

  /** Bytes received but not yet forming a whole frame. */
  get pending(): number {
    return this.queue.length;
  }

  /** Call at end of input: leftover bytes mean the stream was cut inside a frame. */
  finish(): void {
    if (this.failed) throw this.failed;
    if (this.queue.length > 0) {
      this.failed = new FrameError(`input ended inside a frame (${this.queue.length} bytes left over)`);
      throw this.failed;
    }
  }
}
