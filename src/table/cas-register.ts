// A compare-and-set register per (partition key, sort key), kept by the partition's replicas:
// single-decree Paxos, one instance per round, as in CASPaxos. It is the only consensus in
// Bunker, and only conditional writes use it (docs/conditional-writes.md has the design and the
// safety argument). The unconditional write path never touches it.
//
// An acceptor keeps, per key, the highest ballot it promised and the last value it accepted,
// in its own local sqlite table (cas_acceptor): this state is never merged, repaired or synced
// between nodes, as a copied acceptance would be an acceptance the node never made. A promise
// also hands back the acceptor's local copy of the key's entry in the table the register
// guards, read in the same transaction: the proposer learns the key's current state in the
// round that makes it the only proposer.
import type { Database, Statement } from "bun:sqlite";
import { Type, type Static } from "@sinclair/typebox";
import { assert } from "../util/assert";
import type { HybridClock } from "../util/hlc";
import type { GroupCommitter } from "../db/committer";
import type { Placement } from "../cluster/layout";
import { PRIO_HIGH, RpcError, RPC_ERR, type RpcNode } from "../rpc/rpc";
import { call, endpoint, handle } from "../rpc/endpoint";
import type { Validator } from "../util/validator";
import { QuorumError } from "./quorum";

/**
 * Time an acceptor has to answer one prepare or accept: the messages are small, so this only
 * has to cover a slow inter-site link (a few RTTs of 200 ms) and a busy sqlite commit.
 */
export const CAS_CALL_TIMEOUT_MS = 3_000;

/** Orders proposals: the proposer's hybrid clock, then its node id. */
export const BallotSchema = Type.Object({ ts: Type.Number(), node: Type.String({ maxLength: 128 }) });
export type Ballot = Static<typeof BallotSchema>;

export function compareBallots(a: Ballot, b: Ballot): number {
  return a.ts - b.ts || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
}

export interface Accepted {
  ballot: Ballot;
  value: unknown;
  /**
   * Set once the value was written to the guarded table by whoever knew it chosen (`learn`):
   * a later proposer need not write it again. Without it, a value written, then deleted and
   * its tombstone collected, would be adopted and written back.
   */
  learned?: boolean;
}

/** An acceptor's last acceptance as a reader needs it: its ballot and which value (its id). */
export interface AcceptedId {
  ballot: Ballot;
  id: string;
}

/** An acceptor's answer: a promise (with its last acceptance and its copy of the entry), or a refusal naming the ballot it promised. */
export type PrepareReply = { ok: true; accepted: Accepted | null; entry: unknown } | { ok: false; promised: Ballot };
export type AcceptReply = { ok: true } | { ok: false; promised: Ballot };

const KeySchema = { pk: Type.String({ maxLength: 1024 }), sk: Type.String({ maxLength: 4096 }), ts: Type.Number() };
const AcceptedSchema = Type.Union([Type.Null(), Type.Object({ ballot: BallotSchema, value: Type.Unknown(), learned: Type.Optional(Type.Boolean()) })]);
const AcceptedIdSchema = Type.Object({ ballot: BallotSchema, id: Type.String({ maxLength: 128 }) });
const Refused = Type.Object({ ok: Type.Literal(false), promised: BallotSchema, ts: Type.Number() });

export const CAS_PREPARE = endpoint(
  "cas/prepare",
  Type.Object({ ...KeySchema, ballot: BallotSchema }),
  Type.Union([Type.Object({ ok: Type.Literal(true), accepted: AcceptedSchema, entry: Type.Unknown(), ts: Type.Number() }), Refused]),
);
export const CAS_ACCEPT = endpoint(
  "cas/accept",
  Type.Object({ ...KeySchema, ballot: BallotSchema, value: Type.Unknown() }),
  Type.Union([Type.Object({ ok: Type.Literal(true), ts: Type.Number() }), Refused]),
);
export const CAS_STATUS = endpoint("cas/status", Type.Object(KeySchema), Type.Object({ accepted: Type.Union([Type.Null(), AcceptedIdSchema]), ts: Type.Number() }));
export const CAS_LEARN = endpoint("cas/learn", Type.Object({ ...KeySchema, ballot: BallotSchema }), Type.Object({ ts: Type.Number() }));

/** This node's acceptor state, in sqlite. Promises and acceptances are durable before they are answered. */
export class CasAcceptor {
  private readonly getStmt: Statement;
  private readonly putStmt: Statement;

  constructor(
    db: Database,
    private readonly committer: GroupCommitter,
    /** This node's copy of the guarded entry (pk, sk), read in the promise's transaction. */
    private readonly entryOf: (pk: string, sk: string) => unknown,
    /**
     * Runs in the acceptance's transaction: the guarded table records that a value was accepted
     * here (invisible until it is known to be chosen), so that readers know to ask.
     */
    private readonly onAccept: (pk: string, sk: string, ballot: Ballot, value: unknown) => void = () => {},
    /** Which value an acceptance holds, for readers (`acceptedId`): the guarded version's uuid. */
    private readonly valueId: (value: unknown) => string = () => "",
  ) {
    this.getStmt = db.query(`SELECT promised, accepted FROM cas_acceptor WHERE pk = ? AND sk = ?`);
    this.putStmt = db.query(`INSERT OR REPLACE INTO cas_acceptor (pk, sk, promised, accepted) VALUES (?, ?, ?, ?)`);
  }

  private read(pk: string, sk: string): { promised: Ballot | null; accepted: Accepted | null } {
    const row = this.getStmt.get(pk, sk) as { promised: string | null; accepted: string | null } | null;
    return { promised: row?.promised ? JSON.parse(row.promised) : null, accepted: row?.accepted ? JSON.parse(row.accepted) : null };
  }

  /** Promises never to accept below `ballot`, unless it promised higher already. */
  prepare(pk: string, sk: string, ballot: Ballot): Promise<PrepareReply> {
    // The check and the write run in one sqlite transaction, with nothing else in between.
    return this.committer.write((): PrepareReply => {
      const state = this.read(pk, sk);
      if (state.promised && compareBallots(state.promised, ballot) >= 0) return { ok: false, promised: state.promised };
      this.putStmt.run(pk, sk, JSON.stringify(ballot), state.accepted ? JSON.stringify(state.accepted) : null);
      return { ok: true, accepted: state.accepted, entry: this.entryOf(pk, sk) ?? null };
    });
  }

  /** Accepts `value` at `ballot` unless it promised a higher ballot. */
  accept(pk: string, sk: string, ballot: Ballot, value: unknown): Promise<AcceptReply> {
    return this.committer.write((): AcceptReply => {
      const state = this.read(pk, sk);
      if (state.promised && compareBallots(state.promised, ballot) > 0) return { ok: false, promised: state.promised };
      this.putStmt.run(pk, sk, JSON.stringify(ballot), JSON.stringify({ ballot, value }));
      this.onAccept(pk, sk, ballot, value);
      return { ok: true };
    });
  }

  /** The ballot and value id of the last acceptance, if any (a read: it promises nothing). */
  acceptedId(pk: string, sk: string): AcceptedId | null {
    const accepted = this.read(pk, sk).accepted;
    return accepted ? { ballot: accepted.ballot, id: this.valueId(accepted.value) } : null;
  }

  /** Records that the value accepted at `ballot` is written in the guarded table. */
  learn(pk: string, sk: string, ballot: Ballot): Promise<void> {
    return this.committer.write(() => {
      const state = this.read(pk, sk);
      if (!state.accepted || compareBallots(state.accepted.ballot, ballot) !== 0 || state.accepted.learned) return;
      this.putStmt.run(pk, sk, state.promised ? JSON.stringify(state.promised) : null, JSON.stringify({ ...state.accepted, learned: true }));
    });
  }
}

/** How a proposer reaches another node's acceptor (the RPC layer provides it). */
export interface CasPeers {
  prepare(node: string, pk: string, sk: string, ballot: Ballot): Promise<PrepareReply>;
  accept(node: string, pk: string, sk: string, ballot: Ballot, value: unknown): Promise<AcceptReply>;
  /** The ballot and value id the node last accepted for the key (null: none). */
  acceptedId(node: string, pk: string, sk: string): Promise<AcceptedId | null>;
  learn(node: string, pk: string, sk: string, ballot: Ballot): Promise<void>;
}

export class RpcCasPeers implements CasPeers {
  constructor(
    private readonly rpc: RpcNode,
    private readonly clock: HybridClock,
  ) {}

  private readonly opts = { priority: PRIO_HIGH, timeoutMs: CAS_CALL_TIMEOUT_MS };

  private observed<T extends { ts: number }>(answer: T): Omit<T, "ts"> {
    this.clock.observe(answer.ts);
    const { ts: _, ...rest } = answer;
    return rest;
  }

  async prepare(node: string, pk: string, sk: string, ballot: Ballot): Promise<PrepareReply> {
    return this.observed(await call(this.rpc, node, CAS_PREPARE, { pk, sk, ballot, ts: this.clock.read() }, this.opts)) as PrepareReply;
  }

  async accept(node: string, pk: string, sk: string, ballot: Ballot, value: unknown): Promise<AcceptReply> {
    return this.observed(await call(this.rpc, node, CAS_ACCEPT, { pk, sk, ballot, value, ts: this.clock.read() }, this.opts)) as AcceptReply;
  }

  async acceptedId(node: string, pk: string, sk: string): Promise<AcceptedId | null> {
    return this.observed(await call(this.rpc, node, CAS_STATUS, { pk, sk, ts: this.clock.read() }, this.opts)).accepted;
  }

  async learn(node: string, pk: string, sk: string, ballot: Ballot): Promise<void> {
    this.observed(await call(this.rpc, node, CAS_LEARN, { pk, sk, ballot, ts: this.clock.read() }, this.opts));
  }
}

/**
 * Serves this node's acceptor to its peers. `values` checks a proposed value before it is
 * accepted: a malformed value from a peer never reaches the acceptor's state.
 */
export function serveCas(rpc: RpcNode, clock: HybridClock, acceptor: CasAcceptor, values: Validator<unknown>): void {
  const stamp = <T extends object>(answer: T) => ({ ...answer, ts: clock.read() }); // the time, not a timestamp (HybridClock.read)
  handle(rpc, CAS_PREPARE, async (req) => {
    clock.observe(req.ts);
    return stamp(await acceptor.prepare(req.pk, req.sk, req.ballot));
  });
  handle(rpc, CAS_ACCEPT, async (req) => {
    const problem = values.problem(req.value);
    if (problem !== undefined) throw new RpcError(`endpoint '${CAS_ACCEPT.name}': invalid proposed value: ${problem}`, RPC_ERR.badRequest);
    clock.observe(req.ts);
    return stamp(await acceptor.accept(req.pk, req.sk, req.ballot, req.value));
  });
  handle(rpc, CAS_STATUS, async (req) => {
    clock.observe(req.ts);
    return stamp({ accepted: acceptor.acceptedId(req.pk, req.sk) });
  });
  handle(rpc, CAS_LEARN, async (req) => {
    clock.observe(req.ts);
    await acceptor.learn(req.pk, req.sk, req.ballot);
    return stamp({});
  });
}

/** The acceptors' last acceptances for one key, per node of every live layout version. */
export interface Acceptances {
  sets: string[][];
  answers: ReadonlyMap<string, AcceptedId | null | Error>;
}

/**
 * What the acceptances say of the value `id`, known to have been accepted at `ballot` (the
 * highest ballot a reader saw it marked with): `chosen` when, at some one ballot, a majority of
 * every node set holds it; `superseded` when some acceptor accepted another value at a higher
 * ballot since (the writer of that ballot wrote every value chosen before it to the guarded
 * table first: read it again); `not-chosen` when too few hold it at any ballot, even counting
 * the acceptors that did not answer; `unknown` when the missing answers could make it chosen.
 */
export type Verdict = "chosen" | "superseded" | "not-chosen" | "unknown";

export function verdictOf({ sets, answers }: Acceptances, id: string, ballot: Ballot): Verdict {
  const held = (n: string): AcceptedId | undefined => {
    const a = answers.get(n);
    return a !== undefined && a !== null && !(a instanceof Error) && a.id === id ? a : undefined;
  };
  const silent = (n: string) => answers.get(n) === undefined || answers.get(n) instanceof Error;
  const majority = (s: string[]) => Math.floor(s.length / 2) + 1;
  const ballots = new Map<string, Ballot>();
  for (const n of answers.keys()) {
    const h = held(n);
    if (h) ballots.set(`${h.ballot.ts}/${h.ballot.node}`, h.ballot);
  }
  for (const b of ballots.values()) {
    if (sets.every((s) => s.filter((n) => held(n) !== undefined && compareBallots(held(n)!.ballot, b) === 0).length >= majority(s))) return "chosen";
  }
  for (const a of answers.values()) if (a !== null && !(a instanceof Error) && a.id !== id && compareBallots(a.ballot, ballot) > 0) return "superseded";
  if (sets.some((s) => s.filter((n) => held(n) !== undefined || silent(n)).length < majority(s))) return "not-chosen";
  return "unknown";
}

/** A proposer's round was overtaken by a higher ballot: retry with a higher one. */
export class PreemptedError extends Error {
  constructor(readonly promised: Ballot) {
    super(`preempted by ballot ${promised.ts}/${promised.node.slice(0, 16)}`);
  }
}

/** What a successful prepare learned: the ballot now owned, the highest acceptance seen, and the acceptors' copies of the entry. */
export interface Prepared {
  ballot: Ballot;
  adopted: Accepted | null;
  entries: unknown[];
}

/**
 * Calls `call` on every node of every set at once and resolves when each set has a majority of
 * successes (a joint quorum while the layout changes: any two such quorums share a node of
 * every set). As soon as one set can no longer reach its majority it rejects: with the highest
 * PreemptedError among the failures if there is one (the round lost to a higher ballot, retry
 * above it), else with a QuorumError (too few acceptors answered).
 */
function jointMajority<T>(sets: readonly string[][], call: (node: string) => Promise<T>, timeoutMs: number): Promise<Map<string, T>> {
  const nodes = [...new Set(sets.flat())];
  const need = sets.map((s) => Math.floor(s.length / 2) + 1);
  return new Promise((resolve, reject) => {
    const ok = new Map<string, T>();
    const failed = new Set<string>();
    const errors: string[] = [];
    let preempted: PreemptedError | undefined;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(new Map(ok));
    };
    const timer = setTimeout(() => finish(preempted ?? new QuorumError(Math.max(...need), ok.size, [...errors, "timeout"])), timeoutMs);
    const check = () => {
      if (sets.every((s, i) => s.filter((n) => ok.has(n)).length >= need[i]!)) return finish();
      const lost = sets.findIndex((s, i) => s.length - s.filter((n) => failed.has(n)).length < need[i]!);
      if (lost >= 0) finish(preempted ?? new QuorumError(need[lost]!, sets[lost]!.filter((n) => ok.has(n)).length, errors));
    };
    for (const node of nodes) {
      call(node).then(
        (value) => {
          if (settled) return;
          ok.set(node, value);
          check();
        },
        (err: unknown) => {
          if (settled) return;
          failed.add(node);
          if (err instanceof PreemptedError && (!preempted || compareBallots(err.promised, preempted.promised) > 0)) preempted = err;
          errors.push(err instanceof Error ? err.message : String(err));
          check();
        },
      );
    }
  });
}

/** The proposer side: one prepare or accept phase at a time; the caller decides what to propose. */
export class CasRegister {
  constructor(
    private readonly placement: Placement,
    private readonly local: CasAcceptor,
    private readonly peers: CasPeers | undefined,
    private readonly clock: HybridClock,
  ) {}

  /** A peer known down (not connected, missing its pings) fails at once instead of being waited for. */
  private down(node: string): Error | undefined {
    return this.placement.liveness?.isDown(node) ? new Error(`node ${node.slice(0, 16)} is down`) : undefined;
  }

  private prepareOn(node: string, pk: string, sk: string, ballot: Ballot): Promise<PrepareReply> {
    if (node === this.placement.selfId) return this.local.prepare(pk, sk, ballot);
    const down = this.down(node);
    if (down) return Promise.reject(down);
    assert(this.peers !== undefined, "no RPC route to other acceptors (single-node build)");
    return this.peers.prepare(node, pk, sk, ballot);
  }

  private acceptOn(node: string, pk: string, sk: string, ballot: Ballot, value: unknown): Promise<AcceptReply> {
    if (node === this.placement.selfId) return this.local.accept(pk, sk, ballot, value);
    const down = this.down(node);
    if (down) return Promise.reject(down);
    assert(this.peers !== undefined, "no RPC route to other acceptors (single-node build)");
    return this.peers.accept(node, pk, sk, ballot, value);
  }

  private acceptedOn(node: string, pk: string, sk: string): Promise<AcceptedId | null> {
    if (node === this.placement.selfId) return Promise.resolve(this.local.acceptedId(pk, sk));
    const down = this.down(node);
    if (down) return Promise.reject(down);
    assert(this.peers !== undefined, "no RPC route to other acceptors (single-node build)");
    return this.peers.acceptedId(node, pk, sk);
  }

  /**
   * Every acceptor's last accepted ballot for the key (one round; a node that fails or does
   * not answer within `timeoutMs` is recorded as an Error). Judge a ballot with `verdictOf`.
   */
  async acceptances(partition: number, pk: string, sk: string, timeoutMs = CAS_CALL_TIMEOUT_MS): Promise<Acceptances> {
    const sets = this.placement.writeSets(partition);
    if (sets.length === 0) throw new QuorumError(1, 0, ["no cluster layout has been applied yet"]);
    const nodes = [...new Set(sets.flat())];
    const answers = new Map<string, AcceptedId | null | Error>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(nodes.map((n) => this.acceptedOn(n, pk, sk).then((b) => void answers.set(n, b), (err: unknown) => void answers.set(n, err instanceof Error ? err : new Error(String(err)))))),
      new Promise((r) => (timer = setTimeout(r, timeoutMs))),
    ]);
    clearTimeout(timer);
    return { sets, answers: new Map(answers) };
  }

  /** Whether value `id`, accepted at `ballot`, is chosen: `acceptances` and `verdictOf` in one. */
  async chosenAt(partition: number, pk: string, sk: string, id: string, ballot: Ballot): Promise<Verdict> {
    return verdictOf(await this.acceptances(partition, pk, sk), id, ballot);
  }

  /**
   * Tells every acceptor of the key, in the background, that the value accepted at `ballot` is
   * written in the guarded table (failures are left: a later proposer writes it again).
   */
  learn(partition: number, pk: string, sk: string, ballot: Ballot): void {
    for (const node of new Set(this.placement.writeSets(partition).flat())) {
      const done = node === this.placement.selfId ? this.local.learn(pk, sk, ballot) : this.down(node) || !this.peers ? Promise.resolve() : this.peers.learn(node, pk, sk, ballot);
      done.catch(() => {});
    }
  }

  /** A ballot above everything this node has seen. */
  newBallot(): Ballot {
    return { ts: this.clock.now(), node: this.placement.selfId };
  }

  /**
   * Phase 1 on the key's acceptors (`partition`'s nodes, in every live layout version). Throws
   * PreemptedError when an acceptor promised higher (its ballot is observed, so the next one
   * is higher), QuorumError when too few answer.
   */
  async prepare(partition: number, pk: string, sk: string, ballot: Ballot): Promise<Prepared> {
    const sets = this.placement.writeSets(partition);
    if (sets.length === 0) throw new QuorumError(1, 0, ["no cluster layout has been applied yet"]);
    const replies = await jointMajority(
      sets,
      async (node) => {
        const r = await this.prepareOn(node, pk, sk, ballot);
        if (!r.ok) {
          this.clock.observe(r.promised.ts);
          throw new PreemptedError(r.promised);
        }
        return r;
      },
      CAS_CALL_TIMEOUT_MS,
    );
    let adopted: Accepted | null = null;
    const entries: unknown[] = [];
    for (const r of replies.values()) {
      assert(r.ok, "only promises are counted");
      if (r.accepted && (adopted === null || compareBallots(r.accepted.ballot, adopted.ballot) > 0)) adopted = r.accepted;
      else if (r.accepted?.learned && adopted && compareBallots(r.accepted.ballot, adopted.ballot) === 0) adopted = r.accepted;
      if (r.entry !== null) entries.push(r.entry);
    }
    return { ballot, adopted, entries };
  }

  /** Phase 2: `value` is chosen when this resolves. Throws PreemptedError or QuorumError. */
  async accept(partition: number, pk: string, sk: string, ballot: Ballot, value: unknown): Promise<void> {
    const sets = this.placement.writeSets(partition);
    if (sets.length === 0) throw new QuorumError(1, 0, ["no cluster layout has been applied yet"]);
    await jointMajority(
      sets,
      async (node) => {
        const r = await this.acceptOn(node, pk, sk, ballot, value);
        if (!r.ok) {
          this.clock.observe(r.promised.ts);
          throw new PreemptedError(r.promised);
        }
      },
      CAS_CALL_TIMEOUT_MS,
    );
  }
}
