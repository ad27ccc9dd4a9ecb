// restic (Debian's, minio-go underneath) against a real server: init a repository in a
// bucket, back up a seeded tree of a few hundred files, check every byte, restore and compare,
// back up again after changes, forget --prune (which repacks and deletes), check again, and
// find the bucket's region with no region given (GetBucketLocation). /metrics shows which
// operations restic used and that none was answered with a 5xx.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KiB, MiB, expectOk, run, type RunResult } from "../helpers/clients";
import { grown, s3Counts, serverErrors } from "../helpers/metrics";
import { startServer, type TestServer } from "../helpers/server";
import { signedFetch } from "../helpers/signed";
import { treeDigest, writeSeededFile, writeSeededTree } from "../helpers/seeded-files";

const RESTIC = "/usr/bin/restic";
const present = existsSync(RESTIC);
if (!present) console.warn(`SKIPPED: ${RESTIC} is absent (apt-get install -y restic)`);

/** One restic command: a generous bound for ~25 MiB through one loopback server. */
const RESTIC_TIMEOUT_MS = 120_000;
const SEED = 20261202;
const BUCKET = "restic-bucket";
/** The tree: ~290 small files and 6 of 1-4 MiB, about 20 MiB in all. */
const TREE = { smallFiles: 290, smallMax: 24 * KiB, bigFiles: 6, bigMin: 1 * MiB, bigMax: 4 * MiB };

// Real server and real client: bun's 5 s default is too short, and a timed-out test makes
// bun kill every child process, the server included.
setDefaultTimeout(300_000);

let server: TestServer;
let tmp: string;
let tree: string;

/** restic on the test repository; with `region` false it must find the bucket's region itself. */
function restic(args: string[], opts: { region?: boolean; cwd?: string } = {}): Promise<RunResult> {
  const regionOpt = opts.region === false ? [] : ["-o", `s3.region=${server.region}`];
  return run([RESTIC, "--no-cache", "--quiet", ...regionOpt, ...args], {
    cwd: opts.cwd,
    timeoutMs: RESTIC_TIMEOUT_MS,
    env: {
      PATH: "/usr/bin:/bin",
      HOME: join(tmp, "home"),
      TMPDIR: tmp,
      LANG: "C.UTF-8",
      RESTIC_REPOSITORY: `s3:http://127.0.0.1:${server.s3Port}/${BUCKET}/repo`,
      RESTIC_PASSWORD: "bunker restic test password",
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    },
  });
}

async function resticOk(args: string[], opts: { region?: boolean; cwd?: string } = {}): Promise<RunResult> {
  return expectOk(await restic(args, opts), `restic ${args.join(" ")}`);
}

async function restoreLatest(name: string): Promise<Map<string, string>> {
  const out = join(tmp, name);
  await resticOk(["restore", "latest", "--target", out]);
  const digest = await treeDigest(out);
  rmSync(out, { recursive: true, force: true });
  return digest;
}

async function snapshotCount(region = true): Promise<number> {
  return (JSON.parse((await resticOk(["snapshots", "--json"], { region })).stdout) as unknown[]).length;
}

beforeAll(async () => {
  server = await startServer();
  tmp = mkdtempSync(join(tmpdir(), "bunker-restic-"));
  mkdirSync(join(tmp, "home"));
  tree = join(tmp, "tree");
  writeSeededTree(tree, TREE, SEED);
});

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("a request signed for another region is told the server's region in <Region>, as AWS does", async () => {
  // What minio-go reads from its first GetBucketLocation (signed for us-east-1) when no
  // region is configured; without it, restic signs everything for us-east-1 and fails.
  const r = await signedFetch(server, "GET", "/any-bucket?location", { region: "us-east-1" });
  expect(r.status).toBe(400);
  const body = await r.text();
  expect(body).toContain("<Code>AuthorizationHeaderMalformed</Code>");
  expect(body).toContain(`<Region>${server.region}</Region>`);
});

describe("restic", () => {
  test.skipIf(!present)("init, backup of a seeded tree, check --read-data", async () => {
    await resticOk(["init"]);
    const before = await s3Counts(server);
    await resticOk(["backup", "--host", "bunker-test", "."], { cwd: tree });
    await resticOk(["check", "--read-data"]);
    const after = await s3Counts(server);
    const used = grown(before.requests, after.requests);
    expect(used.PutObject).toBeGreaterThan(3); // packs, index, snapshot, locks
    expect(used.GetObject).toBeGreaterThan(3); // check reads every pack back
    expect(serverErrors(after)).toEqual({});
    expect(await snapshotCount()).toBe(1);
  });

  test.skipIf(!present)("restore gives back the tree byte for byte", async () => {
    expect(await restoreLatest("restore-1")).toEqual(await treeDigest(tree));
  });

  test.skipIf(!present)("a second backup after changes; forget --prune repacks and deletes; check and restore", async () => {
    const original = await treeDigest(tree);
    const paths = [...original.keys()];
    const bigs = paths.filter((p) => p.includes("big-"));
    const smalls = paths.filter((p) => !p.includes("big-"));
    // Drop two big files and 30 small ones, rewrite 20 (each to a new size, so no mtime
    // granularity hides the change), add 10 small files and one big one.
    for (const p of [...bigs.slice(0, 2), ...smalls.slice(0, 30)]) rmSync(join(tree, p));
    for (const [i, p] of smalls.slice(30, 50).entries()) writeSeededFile(join(tree, p), TREE.smallMax + 1 + i, SEED + 1000 + i);
    for (let i = 0; i < 10; i++) writeSeededFile(join(tree, "new", `n${i}.dat`), 100 + i * 997, SEED + 2000 + i);
    writeSeededFile(join(tree, "new", "big-new.bin"), 3 * MiB + 17, SEED + 3000);
    const changed = await treeDigest(tree);
    expect(changed.size).toBe(original.size - 32 + 11);

    await resticOk(["backup", "--host", "bunker-test", "."], { cwd: tree });
    expect(await snapshotCount()).toBe(2);

    const before = await s3Counts(server);
    // --max-unused 0: every pack holding anything of the forgotten snapshot is repacked
    // (read, written anew, deleted) or deleted outright.
    await resticOk(["forget", "--keep-last", "1", "--prune", "--max-unused", "0"]);
    const after = await s3Counts(server);
    const used = grown(before.requests, after.requests);
    expect(used.DeleteObject).toBeGreaterThan(2); // packs, old indexes, the snapshot, locks
    expect(used.PutObject).toBeGreaterThan(1); // repacked packs and the new index
    expect(used.GetObject).toBeGreaterThan(0);
    expect(await snapshotCount()).toBe(1);

    await resticOk(["check", "--read-data"]);
    expect(await restoreLatest("restore-2")).toEqual(changed);
    expect(serverErrors(await s3Counts(server))).toEqual({});
  });

  test.skipIf(!present)("with no region given, restic finds it (GetBucketLocation, then the region the error names)", async () => {
    // minio-go signs GetBucketLocation for us-east-1; the answer (AuthorizationHeaderMalformed)
    // must name the server's region in <Region>, as AWS's does, or every later request fails.
    const before = await s3Counts(server);
    expect(await snapshotCount(false)).toBe(1);
    const used = grown(before.requests, (await s3Counts(server)).requests);
    expect(used.GetBucketLocation).toBe(1);
  });
});
