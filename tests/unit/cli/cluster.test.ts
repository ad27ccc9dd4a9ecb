// `bunker node ...` and `bunker layout ...` against a fake admin API: output, exit codes and
// the exact requests sent.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from "../../../src/cli/index";
import { FakeAdmin, apiError, json, type Handler } from "./fake-admin";

const TOKEN = "test-admin-token";
/** Has a role: dc1, 1 GB, tag ssd. */
const A = "a".repeat(64);
/** Connected, no role; shares the prefix "a" with A. */
const B = `ab${"1".repeat(62)}`;
/** Has a role (dc2, 2 GB) and a staged change to dc3, 3 GB, tag hdd. */
const C = "c".repeat(64);
/** A gateway in the layout that GetClusterStatus no longer lists. */
const D = "d".repeat(64);
const GB = 1e9;

const statusNode = (id: string, addr: string) => ({
  id,
  addr,
  hostname: `host-${id.slice(0, 2)}`,
  isUp: true,
  lastSeenSecsAgo: null,
  role: null,
});

const clusterStatus = {
  node: A,
  layoutVersion: 4,
  nodes: [statusNode(A, "10.0.0.1:3901"), statusNode(B, "10.0.0.2:3901"), statusNode(C, "10.0.0.3:3901")],
};

const baseLayout = () => ({
  version: 4,
  roles: [
    { id: A, zone: "dc1", capacity: 1 * GB, tags: ["ssd"], storedPartitions: 256, usableCapacity: 0.5 * GB },
    { id: C, zone: "dc2", capacity: 2 * GB, tags: [], storedPartitions: 256, usableCapacity: 0.5 * GB },
    { id: D, zone: "dc1", capacity: null, tags: [], storedPartitions: 0, usableCapacity: 0 },
  ],
  parameters: { zoneRedundancy: "maximum" },
  partitionSize: 2 * 1024 ** 2,
  stagedRoleChanges: [{ id: C, remove: false, zone: "dc3", capacity: 3 * GB, tags: ["hdd"] }],
  stagedParameters: null,
});

/** No staged changes. */
const stableLayout = () => ({ ...baseLayout(), stagedRoleChanges: [] });

const preview = () => ({
  message: ["Optimal partition size: 7.8 MB", "Usable capacity / total cluster capacity: 2.0 GB / 4.0 GB (50.0 %)"],
  newLayout: {
    ...baseLayout(),
    version: 5,
    roles: [
      { id: A, zone: "dc1", capacity: 1 * GB, tags: ["ssd"], storedPartitions: 128, usableCapacity: 1 * GB },
      { id: C, zone: "dc3", capacity: 3 * GB, tags: ["hdd"], storedPartitions: 256 },
      { id: D, zone: "dc1", capacity: null, tags: [], storedPartitions: 0 },
    ],
    stagedRoleChanges: [],
  },
});

const history = {
  currentVersion: 4,
  minAck: 3,
  versions: [
    { version: 4, status: "Current", storageNodes: 2, gatewayNodes: 1 },
    { version: 3, status: "Draining", storageNodes: 1, gatewayNodes: 0 },
    { version: 2, status: "Historical", storageNodes: 1, gatewayNodes: 0 },
  ],
  updateTrackers: { [C]: { sync: 3 }, [A]: { sync: 4 } },
};

const routes = (): Record<string, Handler> => ({
  GetNodeInfo: () => json({ nodeId: A, rpcAddr: "10.0.0.1:3901", hostname: "host-aa", layoutVersion: 4 }),
  ConnectClusterNodes: (_q, body) => json(body.map(() => ({ success: true, error: null }))),
  GetClusterStatus: () => json(clusterStatus),
  GetClusterLayout: () => json(baseLayout()),
  UpdateClusterLayout: () => json(baseLayout()),
  PreviewClusterLayoutChanges: () => json(preview()),
  ApplyClusterLayout: (_q, body) =>
    json({ message: ["Layout computed."], layout: { ...stableLayout(), version: body.version } }),
  RevertClusterLayout: () => json(stableLayout()),
  GetClusterLayoutHistory: () => json(history),
});

const fake = new FakeAdmin(TOKEN, routes);
const run = fake.run.bind(fake);

afterAll(() => fake.stop());
beforeEach(() => fake.reset());

/** A usage error: exit 2, one line on stderr, nothing printed, nothing sent. */
function expectUsage(r: { code: number; stdout: string; stderr: string }, message: string, sent: string[] = []) {
  expect(r.stderr).toBe(`error: ${message}\n`);
  expect(r.code).toBe(EXIT_USAGE);
  expect(r.stdout).toBe("");
  expect(fake.endpoints()).toEqual(sent);
}

describe("node id", () => {
  test("prints ID@ADDR on stdout and how to connect on stderr", async () => {
    const r = await run("node", "id");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(`${A}@10.0.0.1:3901\n`);
    expect(r.stderr).toContain(`bunker [-c FILE] node connect ${A}@10.0.0.1:3901`);
    expect(fake.requests).toEqual([
      { method: "GET", endpoint: "GetNodeInfo", query: { node: "self" }, body: undefined, auth: `Bearer ${TOKEN}` },
    ]);
  });

  test("-q prints only the line", async () => {
    const r = await run("node", "id", "-q");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(`${A}@10.0.0.1:3901\n`);
    expect(r.stderr).toBe("");
  });

  test("--json prints the node info, without the hint", async () => {
    const r = await run("node", "id", "--json");
    expect(JSON.parse(r.stdout)).toEqual({ nodeId: A, rpcAddr: "10.0.0.1:3901", hostname: "host-aa", layoutVersion: 4 });
    expect(r.stderr).toBe("");
  });
});

describe("node connect", () => {
  const peer = `${B}@10.0.0.2:3901`;

  test("sends the peer as a one-element array", async () => {
    const r = await run("node", "connect", peer);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(`Connected to ${peer}.\n`);
    expect(fake.requests[0]).toMatchObject({ method: "POST", endpoint: "ConnectClusterNodes", body: [peer] });
  });

  test("accepts host names and bracketed IPv6 addresses", async () => {
    expect((await run("node", "connect", `${B}@node2.example.org:3901`)).code).toBe(EXIT_OK);
    expect((await run("node", "connect", `${B}@[fd00::2]:3901`)).code).toBe(EXIT_OK);
  });

  test("a failed connection is exit 1 with the node's error", async () => {
    fake.routes.ConnectClusterNodes = () => json([{ success: false, error: "Connection refused (os error 111)" }]);
    const r = await run("node", "connect", peer);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(`error: could not connect to ${peer}: Connection refused (os error 111)\n`);
  });

  test("--json prints the results", async () => {
    const r = await run("node", "connect", peer, "--json");
    expect(JSON.parse(r.stdout)).toEqual([{ success: true, error: null }]);
  });

  for (const bad of ["10.0.0.2:3901", `${B}@10.0.0.2`, `${B.slice(0, 16)}@10.0.0.2:3901`, `${B}@:3901`]) {
    test(`'${bad.length > 30 ? `${bad.slice(0, 30)}...` : bad}' is a usage error`, async () => {
      const r = await run("node", "connect", bad);
      expectUsage(r, `expected <node id>@<host>:<port>, as printed by 'bunker node id' (got '${bad}')`);
    });
  }
});

describe("layout show", () => {
  test("without staged changes: current roles only, no preview request", async () => {
    fake.routes.GetClusterLayout = () => json(stableLayout());
    const r = await run("layout", "show");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.endpoints()).toEqual(["GetClusterLayout"]);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines.slice(0, 5)).toEqual([
      "==== CURRENT CLUSTER LAYOUT ====",
      expect.stringMatching(/^ID\s+Tags\s+Zone\s+Capacity\s+Partitions\s+Usable capacity$/),
      expect.stringMatching(/^aaaaaaaaaaaaaaaa\s+ssd\s+dc1\s+953.7 MiB\s+256\s+476.8 MiB \(50.0%\)$/),
      expect.stringMatching(/^cccccccccccccccc\s+dc2\s+1.9 GiB\s+256\s+476.8 MiB \(25.0%\)$/),
      expect.stringMatching(/^dddddddddddddddd\s+dc1\s+gateway\s+0$/),
    ]);
    expect(r.stdout).toContain("Zone redundancy: maximum\n\nCurrent cluster layout version: 4\n");
    expect(r.stdout).not.toContain("STAGED");
    expect(r.stdout).not.toContain("layout apply");
  });

  test("usable capacity is computed from storedPartitions × partitionSize when not given", async () => {
    const layout = stableLayout();
    layout.roles = [{ id: A, zone: "dc1", capacity: 1024 ** 3, tags: [], storedPartitions: 128 }] as any;
    layout.partitionSize = 4 * 1024 ** 2;
    fake.routes.GetClusterLayout = () => json(layout);
    const r = await run("layout", "show");
    expect(r.stdout).toMatch(/aaaaaaaaaaaaaaaa\s+dc1\s+1.0 GiB\s+128\s+512.0 MiB \(50.0%\)/);
  });

  test("an empty layout says so", async () => {
    fake.routes.GetClusterLayout = () => json({ ...stableLayout(), version: 0, roles: [] });
    const r = await run("layout", "show");
    expect(r.stdout).toContain("No nodes currently have a role in the cluster.\nSee `bunker status` to view available nodes.");
    expect(r.stdout).toContain("Current cluster layout version: 0");
  });

  test("with staged changes: staged table, preview, and the apply command", async () => {
    const layout = baseLayout();
    layout.stagedRoleChanges.push({ id: D, remove: true } as any);
    layout.stagedParameters = { zoneRedundancy: { atLeast: 2 } } as any;
    fake.routes.GetClusterLayout = () => json(layout);
    const r = await run("layout", "show");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.requests.map((q) => [q.method, q.endpoint])).toEqual([
      ["GET", "GetClusterLayout"],
      ["POST", "PreviewClusterLayoutChanges"],
    ]);
    const staged = r.stdout.slice(r.stdout.indexOf("==== STAGED ROLE CHANGES ===="));
    expect(staged.split("\n").slice(0, 6)).toEqual([
      "==== STAGED ROLE CHANGES ====",
      expect.stringMatching(/^ID\s+Tags\s+Zone\s+Capacity$/),
      expect.stringMatching(/^cccccccccccccccc\s+hdd\s+dc3\s+2.8 GiB$/),
      expect.stringMatching(/^dddddddddddddddd\s+REMOVED$/),
      "",
      "Zone redundancy: 2",
    ]);
    expect(r.stdout).toContain("==== NEW CLUSTER LAYOUT AFTER APPLYING CHANGES ====");
    expect(r.stdout).toMatch(/aaaaaaaaaaaaaaaa\s+ssd\s+dc1\s+953.7 MiB\s+128\s+953.7 MiB \(100.0%\)/);
    // No usableCapacity for C: computed from its 256 partitions of 2 MiB.
    expect(r.stdout).toMatch(/cccccccccccccccc\s+hdd\s+dc3\s+2.8 GiB\s+256\s+512.0 MiB \(17.9%\)/);
    expect(r.stdout).toContain("Optimal partition size: 7.8 MB\nUsable capacity / total cluster capacity:");
    expect(r.stdout).toContain("To enact the staged role changes, type:\n\n    bunker layout apply --version 5\n");
    expect(r.stdout).toContain("bunker layout revert --yes");
  });

  test("a preview that cannot be computed is explained, exit 0", async () => {
    fake.routes.PreviewClusterLayoutChanges = () => json({ error: "not enough zones for zone redundancy 3" });
    const r = await run("layout", "show");
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain(
      "Error while trying to compute the assignment: not enough zones for zone redundancy 3\nThis new layout cannot yet be applied.",
    );
    expect(r.stdout).not.toContain("layout apply");
  });

  test("--json prints the layout and the preview", async () => {
    let r = await run("layout", "show", "--json");
    expect(JSON.parse(r.stdout)).toEqual({ layout: baseLayout(), preview: preview() });
    fake.routes.GetClusterLayout = () => json(stableLayout());
    r = await run("layout", "show", "--json");
    expect(JSON.parse(r.stdout)).toEqual({ layout: stableLayout(), preview: null });
  });
});

describe("layout assign", () => {
  test("a new node by prefix, with zone, decimal capacity and tags", async () => {
    const r = await run("layout", "assign", "ab1", "-z", "dc2", "-c", "100G", "-t", "fast", "-t", "nvme");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.endpoints()).toEqual(["GetClusterStatus", "GetClusterLayout", "UpdateClusterLayout"]);
    expect(fake.requests[2]!.method).toBe("POST");
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({
      roles: [{ id: B, zone: "dc2", capacity: 100 * GB, tags: ["fast", "nvme"] }],
    });
    expect(r.stdout).toBe(
      [
        "Role changes are staged but not yet committed.",
        "Use `bunker layout show` to view staged changes,",
        "and `bunker layout apply --version 5` to enact staged changes.",
        "",
      ].join("\n"),
    );
  });

  const capacities: [string, number][] = [
    ["1T", 1e12],
    ["500M", 500e6],
    ["10GB", 10e9],
    ["2TiB", 2 * 1024 ** 4],
    ["512Gi", 512 * 1024 ** 3],
    ["1.5T", 1.5e12],
    ["1073741824", 1024 ** 3],
  ];
  for (const [text, bytes] of capacities) {
    test(`-c ${text} sends ${bytes} bytes`, async () => {
      const r = await run("layout", "assign", B, "-z", "dc2", "--capacity", text);
      expect(r.code).toBe(EXIT_OK);
      expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: B, zone: "dc2", capacity: bytes, tags: [] }] });
    });
  }

  test("-g makes a gateway: capacity null", async () => {
    const r = await run("layout", "assign", "-g", "-z", "edge", "ab");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: B, zone: "edge", capacity: null, tags: [] }] });
  });

  test("changing only the capacity keeps the current zone and tags", async () => {
    const r = await run("layout", "assign", "aaaa", "-c", "2TiB");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({
      roles: [{ id: A, zone: "dc1", capacity: 2 * 1024 ** 4, tags: ["ssd"] }],
    });
  });

  test("changing only the zone keeps the capacity; -g turns a storage node into a gateway", async () => {
    let r = await run("layout", "assign", "aaaa", "-z", "dc9");
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: A, zone: "dc9", capacity: GB, tags: ["ssd"] }] });
    fake.reset();
    r = await run("layout", "assign", "aaaa", "-g");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: A, zone: "dc1", capacity: null, tags: ["ssd"] }] });
  });

  test("a staged change wins over the current role for the kept values", async () => {
    const r = await run("layout", "assign", "c", "-t", "cold");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: C, zone: "dc3", capacity: 3 * GB, tags: ["cold"] }] });
  });

  test("a gateway's null capacity is kept as null", async () => {
    const r = await run("layout", "assign", "d", "-z", "dc2");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: D, zone: "dc2", capacity: null, tags: [] }] });
  });

  test("a node whose removal is staged has no role to keep", async () => {
    const layout = baseLayout();
    layout.stagedRoleChanges = [{ id: A, remove: true } as any];
    fake.routes.GetClusterLayout = () => json(layout);
    const r = await run("layout", "assign", "aaaa", "-c", "1G");
    expectUsage(r, "node aaaaaaaaaaaaaaaa has no role yet: give its zone with -z", ["GetClusterStatus", "GetClusterLayout"]);
  });

  test("several nodes at once, and --replace", async () => {
    const r = await run("layout", "assign", "ab", "cc", "-z", "dc4", "-c", "1T", "--replace", "dd", "--replace", "aa");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({
      roles: [
        { id: D, remove: true },
        { id: A, remove: true },
        { id: B, zone: "dc4", capacity: 1e12, tags: [] },
        { id: C, zone: "dc4", capacity: 1e12, tags: ["hdd"] },
      ],
    });
  });

  test("a full id and an ID@ADDR as printed by `node id` are accepted", async () => {
    let r = await run("layout", "assign", B, "-z", "dc2", "-g");
    expect((fake.bodyOf("UpdateClusterLayout") as any).roles[0].id).toBe(B);
    fake.reset();
    r = await run("layout", "assign", `${B.toUpperCase()}@10.0.0.2:3901`, "-z", "dc2", "-g");
    expect(r.code).toBe(EXIT_OK);
    expect((fake.bodyOf("UpdateClusterLayout") as any).roles[0].id).toBe(B);
  });

  test("a new node without -z or without -c/-g is a usage error, nothing is staged", async () => {
    let r = await run("layout", "assign", "ab", "-c", "1G");
    expectUsage(r, "node ab11111111111111 has no role yet: give its zone with -z", ["GetClusterStatus", "GetClusterLayout"]);
    fake.reset();
    r = await run("layout", "assign", "ab", "-z", "dc1", "-t", "x");
    expectUsage(r, "node ab11111111111111 has no role yet: give its capacity with -c, or -g for a gateway", [
      "GetClusterStatus",
      "GetClusterLayout",
    ]);
  });

  test("an ambiguous or unknown prefix is one line, exit 1, nothing staged", async () => {
    let r = await run("layout", "assign", "a", "-z", "dc1", "-c", "1G");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: 'a' matches 2 nodes (aaaaaaaaaaaaaaaa, ab11111111111111): give more of the id\n");
    expect(fake.endpoints()).not.toContain("UpdateClusterLayout");
    fake.reset();
    r = await run("layout", "assign", "ef", "-z", "dc1", "-c", "1G");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: no node matches 'ef' (see 'bunker status')\n");
    expect(fake.endpoints()).not.toContain("UpdateClusterLayout");
  });

  test("bad flags are usage errors before any request", async () => {
    expectUsage(await run("layout", "assign", "ab", "-z", "dc1", "-c", "1G", "-g"), "give either -c or -g, not both");
    expectUsage(
      await run("layout", "assign", "ab", "-z", "dc1", "-c", "10X"),
      "cannot read capacity '10X' (e.g. 100G, 1T, 500M, 10GB or 2TiB)",
    );
    expectUsage(
      await run("layout", "assign", "ab", "-z", "dc1", "-c", "0"),
      "capacity must be more than 0 bytes (use -g for a node that stores nothing)",
    );
    expectUsage(await run("layout", "assign", "ab", "-z", "", "-g"), "the zone must not be empty");
    expectUsage(await run("layout", "assign", "-z", "dc1", "-g"), "missing NODE (see 'bunker layout assign --help')");
  });

  test("--json prints the updated layout", async () => {
    const r = await run("layout", "assign", "ab", "-z", "dc1", "-g", "--json");
    expect(JSON.parse(r.stdout)).toEqual(baseLayout());
  });

  test("an API error is one line, exit 1", async () => {
    fake.routes.UpdateClusterLayout = () => apiError(400, "InvalidRequest", "capacity too small");
    const r = await run("layout", "assign", "ab", "-z", "dc1", "-c", "1K");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: capacity too small (InvalidRequest)\n");
  });
});

describe("layout remove", () => {
  test("stages the removal, resolving the prefix among layout nodes too", async () => {
    const r = await run("layout", "remove", "ddd");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ roles: [{ id: D, remove: true }] });
    expect(r.stdout).toStartWith("Role removal is staged but not yet committed.\n");
  });

  test("takes exactly one node", async () => {
    expectUsage(await run("layout", "remove"), "missing NODE (see 'bunker layout remove --help')");
    expectUsage(await run("layout", "remove", "aa", "cc"), "unexpected argument 'cc' (see 'bunker layout remove --help')");
  });
});

describe("layout config", () => {
  const cases: [string, unknown][] = [
    ["2", { atLeast: 2 }],
    ["maximum", "maximum"],
    ["max", "maximum"],
    ["none", "maximum"],
  ];
  for (const [arg, zoneRedundancy] of cases) {
    test(`-r ${arg}`, async () => {
      const r = await run("layout", "config", "-r", arg);
      expect(r.code).toBe(EXIT_OK);
      expect(fake.bodyOf("UpdateClusterLayout")).toEqual({ parameters: { zoneRedundancy } });
      expect(fake.endpoints()).toEqual(["UpdateClusterLayout"]);
    });
  }

  test("says what was staged", async () => {
    const r = await run("layout", "config", "--redundancy", "3");
    expect(r.stdout).toStartWith("The zone redundancy parameter '3' is staged but not yet committed.\n");
  });

  test("a bad or missing value is a usage error", async () => {
    expectUsage(await run("layout", "config", "-r", "0"), "zone redundancy must be 'maximum' or a number of zones (got '0')");
    expectUsage(await run("layout", "config", "-r", "two"), "zone redundancy must be 'maximum' or a number of zones (got 'two')");
    expectUsage(await run("layout", "config"), "nothing to configure: give -r N or -r maximum");
  });
});

describe("layout apply", () => {
  test("without --version: usage error, nothing sent", async () => {
    expectUsage(
      await run("layout", "apply"),
      "missing --version N: the new layout version, as printed by 'bunker layout show'",
    );
    expectUsage(await run("layout", "apply", "--version", "next"), "--version must be a layout version number (got 'next')");
  });

  test("sends the version, prints the messages and the new version", async () => {
    const r = await run("layout", "apply", "--version", "5");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.requests).toMatchObject([{ method: "POST", endpoint: "ApplyClusterLayout", body: { version: 5 } }]);
    expect(r.stdout).toBe(
      [
        "Layout computed.",
        "New cluster layout with updated role assignment has been applied in cluster (version 5).",
        "Data will now be moved around between nodes accordingly.",
        "",
      ].join("\n"),
    );
  });

  test("--json prints the result", async () => {
    const r = await run("layout", "apply", "--version=5", "--json");
    const out = JSON.parse(r.stdout);
    expect(out.message).toEqual(["Layout computed."]);
    expect(out.layout.version).toBe(5);
  });

  test("a wrong version refused by the node is exit 1", async () => {
    fake.routes.ApplyClusterLayout = () => apiError(400, "InvalidRequest", "Invalid new layout version: expected 5, got 7");
    const r = await run("layout", "apply", "--version", "7");
    expect(r.code).toBe(EXIT_FAILURE);
    expect(r.stderr).toBe("error: Invalid new layout version: expected 5, got 7 (InvalidRequest)\n");
  });
});

describe("layout revert", () => {
  test("refused without --yes, before any request", async () => {
    expectUsage(await run("layout", "revert"), "refusing to revert the staged layout changes without --yes");
  });

  test("--yes reverts", async () => {
    const r = await run("layout", "revert", "--yes");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.requests).toMatchObject([{ method: "POST", endpoint: "RevertClusterLayout" }]);
    expect(r.stdout).toBe("All proposed role changes in cluster layout have been canceled.\n");
    const j = await run("layout", "revert", "--yes", "--json");
    expect(JSON.parse(j.stdout)).toEqual(stableLayout());
  });
});

describe("layout history", () => {
  test("versions and update trackers as tables", async () => {
    const r = await run("layout", "history");
    expect(r.code).toBe(EXIT_OK);
    expect(fake.requests).toMatchObject([{ method: "GET", endpoint: "GetClusterLayoutHistory" }]);
    const lines = r.stdout.split("\n");
    expect(lines.slice(0, 5)).toEqual([
      "==== LAYOUT HISTORY ====",
      expect.stringMatching(/^Version\s+Status\s+Storage nodes\s+Gateway nodes$/),
      expect.stringMatching(/^#4\s+Current\s+2\s+1$/),
      expect.stringMatching(/^#3\s+Draining\s+1\s+0$/),
      expect.stringMatching(/^#2\s+Historical\s+1\s+0$/),
    ]);
    expect(lines.slice(6, 10)).toEqual([
      "==== UPDATE TRACKERS ====",
      expect.stringMatching(/^Node\s+Sync$/),
      expect.stringMatching(/^aaaaaaaaaaaaaaaa\s+#4$/),
      expect.stringMatching(/^cccccccccccccccc\s+#3$/),
    ]);
    expect(r.stdout).toContain("Several layout versions are currently live");
  });

  test("a single live version is a stable state; Garage's ack columns show when sent", async () => {
    fake.routes.GetClusterLayoutHistory = () =>
      json({
        ...history,
        versions: [{ version: 4, status: "Current", storageNodes: 2, gatewayNodes: 1 }],
        updateTrackers: { [A]: { ack: 4, sync: 4, syncAck: 4 } },
      });
    const r = await run("layout", "history");
    expect(r.stdout).toMatch(/Node\s+Ack\s+Sync\s+Sync ack\naaaaaaaaaaaaaaaa\s+#4\s+#4\s+#4\n/);
    expect(r.stdout).toContain("Your cluster is currently in a stable state with a single live layout version.");
  });

  test("--json prints the history", async () => {
    const r = await run("layout", "history", "--json");
    expect(JSON.parse(r.stdout)).toEqual(history);
  });
});

describe("help", () => {
  test("the new groups are listed and documented", async () => {
    const top = await fake.cli(["--help"]);
    expect(top.stdout).toMatch(/node\s+node identity and connections \(id, connect\)/);
    expect(top.stdout).toMatch(/layout\s+manage the cluster layout.*\(show, assign, remove, config, apply, revert, history\)/);

    const assign = await fake.cli(["layout", "assign", "--help"]);
    expect(assign.code).toBe(EXIT_OK);
    expect(assign.stdout).toContain("Usage: bunker layout assign NODE... [options]");
    expect(assign.stdout).toMatch(/-c, --capacity SIZE\s+storage capacity/);
    expect(assign.stdout).toMatch(/-t, --tag TAG\.\.\.\s+tag of the node/);
    expect((await fake.cli(["help", "layout", "apply"])).stdout).toMatch(/--version N\s+the new layout version/);
    expect((await fake.cli(["node", "--help"])).stdout).toContain("bunker node connect ID@HOST:PORT [options]");
  });

  test("unknown layout command", async () => {
    expectUsage(
      await run("layout", "skip"),
      "unknown command 'layout skip' (see 'bunker layout --help')",
    );
    expectUsage(
      await run("layout"),
      "missing command: bunker layout <show|assign|remove|config|apply|revert|history>",
    );
  });
});
