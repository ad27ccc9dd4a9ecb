// Refused handshakes are logged once per source address per interval, with the count of those
// left out, so that anyone who can reach the RPC port cannot flood the log (one line each).
import { afterEach, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { connect as netConnect } from "node:net";
import type { RpcNode } from "../../../src/rpc/rpc.ts";
import { captureStderr, startNode } from "./helpers.ts";

const nodes: RpcNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

/** Sends garbage instead of a handshake and waits for the node to close the socket. */
async function refusedAttempt(port: number): Promise<void> {
  const sock = netConnect(port, "127.0.0.1");
  sock.on("error", () => {});
  const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
  sock.write(randomBytes(64));
  await closed;
}

const refusalLines = (output: string) => output.split("\n").filter((l) => l.includes("refused connection from"));

test("a burst of refused handshakes from one address is one log line, the next interval's line counts the rest", async () => {
  const intervalMs = 400;
  const b = await startNode({ handshakeRefusalLogIntervalMs: intervalMs });
  nodes.push(b);
  const { output } = await captureStderr(async () => {
    const burstStart = Date.now();
    for (let i = 0; i < 6; i++) await refusedAttempt(b.port);
    // The burst must have fitted in one interval for the count below to hold.
    expect(Date.now() - burstStart).toBeLessThan(intervalMs);
    await Bun.sleep(intervalMs + 50);
    await refusedAttempt(b.port);
  });
  const lines = refusalLines(output);
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/refused connection from 127\.0\.0\.1:\d+: wrong rpc_secret \(network key\)$/);
  expect(lines[1]).toMatch(/wrong rpc_secret \(network key\) \(5 more refused connections from 127\.0\.0\.1 since the last such line, not logged\)$/);
});
