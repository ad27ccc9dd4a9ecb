// Starts several real Bunker processes on loopback that form one cluster: same rpc_secret,
// connected through the first node, one zone each unless told otherwise, layout applied.
import { randomBytes } from "node:crypto";
import { startServer, type TestServer } from "./server";

export interface TestCluster {
  nodes: TestServer[];
  ids: string[];
  rpcSecret: string;
  stop(): Promise<void>;
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

export async function startCluster(opts: { nodes: number; replicationFactor: number; zones?: string[]; extraToml?: string; blockSize?: number; compression?: number | "none" }): Promise<TestCluster> {
  const rpcSecret = randomBytes(32).toString("hex");
  const nodes: TestServer[] = [];
  try {
    for (let i = 0; i < opts.nodes; i++) nodes.push(await startServer({ replicationFactor: opts.replicationFactor, rpcSecret, extraToml: opts.extraToml, blockSize: opts.blockSize, compression: opts.compression }));
    return await formCluster(nodes, rpcSecret, opts.zones);
  } catch (err) {
    // Nothing is left running when the cluster cannot be formed.
    await Promise.allSettled(nodes.map((n) => n.stop()));
    throw err;
  }
}

async function formCluster(nodes: TestServer[], rpcSecret: string, zonesOpt?: string[]): Promise<TestCluster> {
  const infos = await Promise.all(nodes.map((n) => n.admin<{ nodeId: string; rpcAddr: string }>("GET", "/v2/GetNodeInfo?node=self")));
  const ids = infos.map((i) => i.nodeId);
  for (let i = 1; i < nodes.length; i++) {
    const r = await nodes[i]!.admin<{ success: boolean; error: string | null }[]>("POST", "/v2/ConnectClusterNodes", [`${ids[0]}@${infos[0]!.rpcAddr}`]);
    if (!r[0]!.success) throw new Error(`node ${i} cannot connect: ${r[0]!.error}`);
  }
  // Full mesh: every node learns every other through the first one's pings.
  await waitFor("full mesh", async () => {
    for (const n of nodes) {
      const st = await n.admin<{ nodes: { isUp: boolean }[] }>("GET", "/v2/GetClusterStatus");
      if (st.nodes.filter((x) => x.isUp).length < nodes.length) return false;
    }
    return true;
  });
  const zones = zonesOpt ?? nodes.map((_, i) => `zone${i + 1}`);
  await nodes[0]!.admin("POST", "/v2/UpdateClusterLayout", {
    roles: ids.map((id, i) => ({ id, zone: zones[i % zones.length]!, capacity: 10 * 1024 ** 3, tags: [] })),
  });
  await nodes[0]!.admin("POST", "/v2/ApplyClusterLayout", { version: 1 });
  await waitFor("layout on every node", async () => {
    for (const n of nodes) {
      const l = await n.admin<{ version: number }>("GET", "/v2/GetClusterLayout");
      if (l.version < 1) return false;
    }
    return true;
  });
  return {
    nodes,
    ids,
    rpcSecret,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
