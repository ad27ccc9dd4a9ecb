// The run's history: every client operation with its invocation and completion times (one
// monotonic clock: the client's), its outcome and what it wrote or read, and the nemesis's
// fault windows. The checker works on this record only.

export type OpKind = "put" | "mpu" | "cput" | "delete" | "get" | "list" | "final-get" | "final-list";

/**
 * ok: the server acknowledged it. fail: definitely not applied (e.g. 412 on a conditional
 * create, or a multipart upload never completed). info: indeterminate (5xx, timeout, connection
 * error): it may or may not have taken effect, now or later.
 */
export type Outcome = "ok" | "fail" | "info";

/** What a read returned: the body of write `op`, no object, or bytes no write produced as they are. */
export type ReadResult = { kind: "value"; op: number } | { kind: "absent" } | { kind: "bad"; why: string };

export interface Op {
  id: number;
  worker: number;
  kind: OpKind;
  key: string;
  /** Storage node (1-based) the request went to. */
  node: number;
  start: number;
  end: number;
  outcome: Outcome;
  /** HTTP status of the deciding response, null without one (timeout, connection error). */
  status: number | null;
  error?: string;
  read?: ReadResult;
  /** Body size sent (writes) or received (reads). */
  bytes?: number;
  /** Keys a listing returned. */
  listed?: string[];
  /** Conditional-create race this op belongs to. */
  race?: number;
}

export interface FaultWindow {
  kind: string;
  detail: string;
  /** Nodes the fault hits directly (the isolated, killed, paused... node; the smaller side of a split). */
  nodes: number[];
  start: number;
  /** When the fault was healed (Infinity while active). */
  end: number;
}

export class History {
  readonly ops: Op[] = [];
  readonly faults: FaultWindow[] = [];
  /** Faults the nemesis could not inject or heal (a layout change that never reached every node...). */
  readonly nemesisErrors: string[] = [];
  private nextId: number;

  /** A scratch history shares its parent's clock, with ids from `firstId` (no clash with the parent's). */
  constructor(
    readonly t0 = performance.now(),
    firstId = 1,
  ) {
    this.nextId = firstId;
  }

  now(): number {
    return performance.now() - this.t0;
  }

  /** A fresh operation id (also the id of the value a write carries). */
  id(): number {
    return this.nextId++;
  }

  add(op: Op): void {
    this.ops.push(op);
  }
}
