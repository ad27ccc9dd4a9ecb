// The fault suite's network: one network namespace per node, each joined by a veth pair to a
// private bridge in the root namespace (where the test client runs), and partitions made of
// iptables DROP rules inside the node namespaces (silent, like a cut cable: no RST, no ICMP).
// Every name starts with PREFIX so that leftovers of a crashed run are found and removed.
import { readdirSync } from "node:fs";

export const PREFIX = "bkf";
const BRIDGE = `${PREFIX}-br0`;
/** A private /24 of our own; the bridge is .1, node i (1-based) is .(10 + i). */
const SUBNET = "10.77.0";
/** Bound of one `ip` / `iptables` invocation: they answer in milliseconds unless the kernel is stuck. */
const NET_CMD_TIMEOUT_MS = 10_000;

export const nsName = (i: number) => `${PREFIX}-n${i}`;
export const addrOf = (i: number) => `${SUBNET}.${10 + i}`;
const vethName = (i: number) => `${PREFIX}-v${i}`;

/** Runs a command to completion; throws with its output when it fails (unless `check` is false). */
export function sh(args: string[], check = true): { code: number; out: string } {
  const p = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe", timeout: NET_CMD_TIMEOUT_MS });
  const out = `${p.stdout.toString()}${p.stderr.toString()}`;
  const code = p.exitCode ?? -1;
  if (check && code !== 0) throw new Error(`${args.join(" ")} failed (${code}): ${out.trim()}`);
  return { code, out };
}

/** Why namespaces cannot be used here (not root, no `ip`/`iptables`), or null when they can. */
export function namespacesUnavailable(): string | null {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces and iptables need root (run as root, or in CI)";
  for (const tool of ["ip", "iptables", "fallocate", "mount"]) {
    if (Bun.which(tool) === null) return `\`${tool}\` is not installed (apt-get install iproute2 iptables util-linux)`;
  }
  const probe = `${PREFIX}-probe`;
  sh(["ip", "netns", "del", probe], false);
  const made = sh(["ip", "netns", "add", probe], false);
  if (made.code !== 0) return `cannot create a network namespace: ${made.out.trim()}`;
  const ipt = sh(["ip", "netns", "exec", probe, "iptables", "-S"], false);
  sh(["ip", "netns", "del", probe], false);
  if (ipt.code !== 0) return `iptables does not work in a namespace: ${ipt.out.trim()}`;
  return null;
}

/** Removes every namespace, link and root rule of ours, with the processes still inside the namespaces (a crashed run's). */
export function cleanupNetwork(): void {
  const names = readdirSafe("/run/netns").filter((n) => n.startsWith(`${PREFIX}-`));
  for (const ns of names) {
    for (const pid of sh(["ip", "netns", "pids", ns], false).out.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
    sh(["ip", "netns", "del", ns], false);
  }
  for (const link of readdirSafe("/sys/class/net").filter((n) => n.startsWith(`${PREFIX}-`))) sh(["ip", "link", "del", link], false);
  for (let i = 0; i < MAX_RULE_COPIES && sh(["iptables", "-D", ...FORWARD_RULE], false).code === 0; i++);
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * With br_netfilter loaded, packets between two ports of a bridge pass the root namespace's
 * FORWARD chain, whose policy is DROP on hosts that run Docker: let ours through.
 */
const FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"];
/** Bound on removing copies of FORWARD_RULE (one per crashed run at most). */
const MAX_RULE_COPIES = 16;

export function createBridge(): void {
  sh(["iptables", "-I", ...FORWARD_RULE]);
  sh(["ip", "link", "add", BRIDGE, "type", "bridge"]);
  sh(["ip", "addr", "add", `${SUBNET}.1/24`, "dev", BRIDGE]);
  sh(["ip", "link", "set", BRIDGE, "up"]);
}

/** Namespace of node i, its end of a veth pair as eth0 with addrOf(i), the other end on the bridge. */
export function createNodeNamespace(i: number): void {
  const ns = nsName(i);
  sh(["ip", "netns", "add", ns]);
  sh(["ip", "link", "add", vethName(i), "type", "veth", "peer", "name", `${vethName(i)}p`]);
  sh(["ip", "link", "set", `${vethName(i)}p`, "netns", ns]);
  sh(["ip", "netns", "exec", ns, "ip", "link", "set", `${vethName(i)}p`, "name", "eth0"]);
  sh(["ip", "netns", "exec", ns, "ip", "addr", "add", `${addrOf(i)}/24`, "dev", "eth0"]);
  sh(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"]);
  sh(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
  sh(["ip", "link", "set", vethName(i), "master", BRIDGE]);
  sh(["ip", "link", "set", vethName(i), "up"]);
}

/**
 * Cuts every node of `a` from every node of `b`, both ways, by dropping packets inside each
 * node's namespace. The client (the bridge address) still reaches everyone: a client talking to
 * the minority side is the case worth testing.
 */
export function cut(a: number[], b: number[]): void {
  const drop = (from: number, peers: number[]) => {
    for (const p of peers) {
      sh(["ip", "netns", "exec", nsName(from), "iptables", "-A", "INPUT", "-s", addrOf(p), "-j", "DROP"]);
      sh(["ip", "netns", "exec", nsName(from), "iptables", "-A", "OUTPUT", "-d", addrOf(p), "-j", "DROP"]);
    }
  };
  for (const x of a) drop(x, b);
  for (const y of b) drop(y, a);
}

/** Removes every partition rule of these nodes. */
export function healNetwork(nodes: number[]): void {
  for (const i of nodes) sh(["ip", "netns", "exec", nsName(i), "iptables", "-F"], false);
}
