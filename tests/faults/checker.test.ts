// The fault suite's checker and bodies on hand-made histories (no cluster, no root): each rule
// finds what it should and nothing where the history is legal, so a green fault run means
// something.
import { expect, test } from "bun:test";
import { check, type AnomalyKind } from "./checker";
import { History, type Op } from "./history";
import { decodeBody, makeBody } from "./values";

function history(ops: Partial<Op>[]): History {
  const h = new History(0);
  for (const o of ops) h.add({ id: 0, worker: 0, kind: "get", key: "k", node: 1, start: 0, end: 0, outcome: "ok", status: 200, ...o } as Op);
  return h;
}
const kinds = (h: History): AnomalyKind[] => check(h).anomalies.map((a) => a.kind);
const value = (op: number) => ({ kind: "value" as const, op });
const absent = { kind: "absent" as const };

test("a read of the last acknowledged write, or of a concurrent one, is fine", () => {
  expect(kinds(history([{ id: 1, kind: "put", start: 0, end: 1 }, { id: 2, start: 2, end: 3, read: value(1) }]))).toEqual([]);
  // Op 2 began before op 1 ended: either order is legal.
  expect(kinds(history([{ id: 1, kind: "put", start: 0, end: 3 }, { id: 2, kind: "put", start: 1, end: 2 }, { id: 3, start: 4, end: 5, read: value(1) }]))).toEqual([]);
  // An indeterminate write may land at any time, even after a later acknowledged one.
  expect(kinds(history([{ id: 1, kind: "put", start: 0, end: 1, outcome: "info" }, { id: 2, kind: "put", start: 2, end: 3 }, { id: 3, start: 4, end: 5, read: value(1) }]))).toEqual([]);
  // The overwrite was acknowledged only after the read began.
  expect(kinds(history([{ id: 1, kind: "put", start: 0, end: 1 }, { id: 2, kind: "put", start: 2, end: 4.5 }, { id: 3, start: 4, end: 5, read: value(1) }]))).toEqual([]);
});

test("a read of an overwritten value is stale; after convergence it is a lost write", () => {
  const ops = [{ id: 1, kind: "put" as const, start: 0, end: 1 }, { id: 2, kind: "put" as const, start: 2, end: 3 }];
  expect(kinds(history([...ops, { id: 3, start: 4, end: 5, read: value(1) }]))).toEqual(["stale"]);
  expect(kinds(history([...ops, { id: 3, kind: "final-get", start: 9, end: 10, read: value(1) }]))).toEqual(["lost"]);
  // A DELETE overwrites too.
  expect(kinds(history([ops[0]!, { id: 2, kind: "delete", start: 2, end: 3 }, { id: 3, start: 4, end: 5, read: value(1) }]))).toEqual(["stale"]);
});

test("no object is stale after an acknowledged PUT unless a DELETE may have come after it", () => {
  const put = { id: 1, kind: "put" as const, start: 0, end: 1 };
  expect(kinds(history([put, { id: 2, start: 2, end: 3, read: absent }]))).toEqual(["stale"]);
  expect(kinds(history([put, { id: 2, kind: "final-get", start: 9, end: 10, read: absent }]))).toEqual(["lost"]);
  expect(kinds(history([{ id: 3, kind: "delete", start: 0, end: 0.5 }, { ...put, start: 0.6 }, { id: 2, start: 2, end: 3, read: absent }]))).toEqual(["stale"]);
  expect(kinds(history([put, { id: 3, kind: "delete", start: 1.5, end: 1.6 }, { id: 2, start: 2, end: 3, read: absent }]))).toEqual([]);
  expect(kinds(history([put, { id: 3, kind: "delete", start: 0.5, end: 9, outcome: "info" }, { id: 2, start: 2, end: 3, read: absent }]))).toEqual([]);
  expect(kinds(history([{ id: 2, start: 2, end: 3, read: absent }]))).toEqual([]);
});

test("values nobody wrote, refused writes, future writes and damaged bodies are phantom or corrupt reads", () => {
  expect(kinds(history([{ id: 2, start: 2, end: 3, read: value(99) }]))).toEqual(["phantom"]);
  expect(kinds(history([{ id: 1, kind: "cput", start: 0, end: 1, outcome: "fail", status: 412 }, { id: 2, start: 2, end: 3, read: value(1) }]))).toEqual(["phantom"]);
  expect(kinds(history([{ id: 1, kind: "put", key: "other", start: 0, end: 1 }, { id: 2, start: 2, end: 3, read: value(1) }]))).toEqual(["phantom"]);
  expect(kinds(history([{ id: 1, kind: "put", start: 4, end: 5 }, { id: 2, start: 2, end: 3, read: value(1) }]))).toEqual(["phantom"]);
  expect(kinds(history([{ id: 2, start: 2, end: 3, read: { kind: "bad", why: "empty body" } }]))).toEqual(["corrupt"]);
  expect(kinds(history([{ id: 2, start: 2, end: 3, read: { kind: "bad", why: "body of key x (op 4)" } }]))).toEqual(["phantom"]);
});

test("two acknowledged conditional creates of one key are a double win; one winner is fine", () => {
  const racer = (id: number, outcome: "ok" | "fail") => ({ id, kind: "cput" as const, key: "c/1", race: 1, start: 0, end: 1, outcome, status: outcome === "ok" ? 200 : 412 });
  expect(kinds(history([racer(1, "ok"), racer(2, "fail"), racer(3, "fail")]))).toEqual([]);
  expect(kinds(history([racer(1, "ok"), racer(2, "ok"), racer(3, "fail")]))).toEqual(["double-win"]);
});

test("after convergence, nodes must agree and listings must hold exactly the present keys", () => {
  const put = { id: 1, kind: "put" as const, start: 0, end: 1 };
  const final = (id: number, node: number, read: Op["read"]) => ({ id, kind: "final-get" as const, node, start: 9, end: 10, read });
  const list = (id: number, listed: string[]) => ({ id, kind: "final-list" as const, key: "", start: 9, end: 10, listed });
  expect(kinds(history([put, final(2, 1, value(1)), final(3, 2, value(1)), list(4, ["k"])]))).toEqual([]);
  expect(kinds(history([put, final(2, 1, value(1)), final(3, 2, value(1)), list(4, [])]))).toEqual(["listing-missing"]);
  expect(kinds(history([{ id: 5, kind: "delete", start: 2, end: 3 }, final(2, 1, absent), list(4, ["k"])]))).toEqual(["listing-extra"]);
  expect(kinds(history([put, { id: 5, kind: "put", start: 0, end: 1 }, final(2, 1, value(1)), final(3, 2, value(5))]))).toEqual(["divergent"]);
  expect(kinds(history([{ id: 4, kind: "list", key: "", start: 0, end: 1, listed: ["ghost"] }]))).toEqual(["listing-phantom"]);
});

test("a body decodes to its write, and any change to it is caught", () => {
  for (const size of [1, 60, 4096, 1_100_000]) {
    const body = makeBody(7, "r/1", 42, size);
    expect(decodeBody(7, "r/1", body)).toEqual({ ok: true, op: 42 });
    const flipped = body.slice();
    flipped[flipped.length - 1]! ^= 1;
    expect(decodeBody(7, "r/1", flipped).ok).toBe(false);
    expect(decodeBody(7, "r/1", body.subarray(0, body.length - 1)).ok).toBe(false);
  }
  expect(decodeBody(7, "r/1", new Uint8Array())).toEqual({ ok: false, why: "empty body" });
  expect(decodeBody(7, "r/2", makeBody(7, "r/1", 42, 100))).toEqual({ ok: false, why: "body of key r/1 (op 42)" });
});
