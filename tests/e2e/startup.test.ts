// Start-up of the real server process (`bun src/main.ts -c FILE server`): configuration
// mistakes stop it in one line before anything is written to disk, secrets and data are
// the owner's only (and are made so when an older start left them open), the node says
// which version it runs, and a node that has started and serves nothing stays small.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { freePort, startServer, type TestServer } from "../helpers/server";
import { statusKiB } from "../../benchmarks/lib/proc.ts";
import { RELEASE_STARTUP_PAGES_DELAY_MS } from "../../src/cli/startup-pages";

setDefaultTimeout(60_000);

const ROOT = join(import.meta.dir, "..", "..");
/** A server refusing its config exits at once; this only bounds a hang. */
const EXIT_DEADLINE_MS = 15_000;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "bunker-startup-"));
  dirs.push(d);
  return d;
}

const mode = (path: string) => statSync(path).mode & 0o777;

/** Writes `toml` (after metadata_dir/data_dir in a fresh directory), runs the server on it and
 * waits for it to exit; a server still running at the deadline is killed and the test fails. */
async function serverExit(toml: string, env: Record<string, string> = {}) {
  const dir = tempDir();
  const meta = join(dir, "meta");
  const data = join(dir, "data");
  const configPath = join(dir, "bunker.toml");
  writeFileSync(configPath, `metadata_dir = "${meta}"\ndata_dir = "${data}"\n${toml.replaceAll("$DIR", dir)}`);
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "-c", configPath, "server"], {
    cwd: dir,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BUNKER_LOG: "warn", ...env },
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), EXIT_DEADLINE_MS);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr, dir, meta, data, signal: proc.signalCode };
}

describe("a config mistake stops start-up in one line, before anything is written", () => {
  test("a bad port in [admin]", async () => {
    const s3 = await freePort();
    const r = await serverExit(`[s3_api]\napi_bind_addr = "127.0.0.1:${s3}"\n[admin]\napi_bind_addr = "127.0.0.1:99999"\nadmin_token = "t"\n`);
    expect(r.signal).toBeNull(); // it exited by itself
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: config: admin.api_bind_addr: port out of range (0..65535) in "127.0.0.1:99999"\n`);
    expect(r.stdout).toBe("");
    expect(existsSync(r.meta)).toBe(false);
    expect(existsSync(r.data)).toBe(false);
    expect(readdirSync(r.dir)).toEqual(["bunker.toml"]);
  });

  test("a misspelt key: the server does not fall back to the default address", async () => {
    const r = await serverExit(`[s3_api]\napi_bind_adr = "127.0.0.1:19300"\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("error: config: s3_api.api_bind_adr: unknown key (did you mean api_bind_addr?)\n");
    expect(readdirSync(r.dir)).toEqual(["bunker.toml"]);
  });

  test("a misspelt section", async () => {
    const r = await serverExit(`[admn]\napi_bind_addr = "127.0.0.1:3903"\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("error: config: admn: unknown section (did you mean admin?)\n");
    expect(readdirSync(r.dir)).toEqual(["bunker.toml"]);
  });

  test("a bootstrap peer that is not <node id>@host:port", async () => {
    const r = await serverExit(`bootstrap_peers = ["10.0.0.1:3901"]\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith("error: config: bootstrap_peers[0]: expected <node id (64 hex)>@<host>:<port>");
    expect(r.stderr.trimEnd()).not.toContain("\n");
    expect(readdirSync(r.dir)).toEqual(["bunker.toml"]);
  });

  test("a secret file open to group or others, naming the key and the file", async () => {
    const dir = tempDir();
    const token = join(dir, "admin_token");
    writeFileSync(token, "secret-token\n");
    chmodSync(token, 0o644);
    const r = await serverExit(`[admin]\nadmin_token_file = "${token}"\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `error: config: admin.admin_token_file: ${token} is accessible by group or others (mode 0644, expected 0600): chmod 600 it, or set allow_world_readable_secrets = true\n`,
    );
    expect(readdirSync(r.dir)).toEqual(["bunker.toml"]);
  });
});

describe("a running node", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("metadata_dir and data_dir are 0700; the database (with -wal, -shm), node key and rpc_secret 0600", () => {
    const meta = join(server.dir, "meta");
    expect(mode(meta)).toBe(0o700);
    expect(mode(join(server.dir, "data"))).toBe(0o700);
    const files = readdirSync(meta).sort();
    for (const f of ["db.sqlite", "db.sqlite-wal", "db.sqlite-shm", "node_key", "node_key.pub", "rpc_secret"]) expect(files).toContain(f);
    for (const f of files) expect([f, mode(join(meta, f))]).toEqual([f, 0o600]);
  });

  test("the admin API and `bunker --version` / `bunker version` report the version", async () => {
    const info = await server.admin<{ garageVersion: string }>("GET", "/v2/GetNodeInfo?node=self");
    expect(info.garageVersion).toBe(`${pkg.version}+dev`);
    const status = await server.admin<{ node: string; nodes: { id: string; garageVersion: string | null }[] }>("GET", "/v2/GetClusterStatus");
    expect(status.nodes.find((n) => n.id === status.node)?.garageVersion).toBe(`${pkg.version}+dev`);
    for (const args of [["--version"], ["version"]]) {
      const r = await server.cli(...args);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`bunker ${pkg.version} (build dev)\n`);
    }
  });

  test("modes an older start left open are closed at the next start, in one log line", async () => {
    const meta = join(server.dir, "meta");
    const data = join(server.dir, "data");
    await server.kill();
    chmodSync(meta, 0o755);
    chmodSync(data, 0o755);
    chmodSync(join(meta, "db.sqlite"), 0o644);
    chmodSync(join(meta, "node_key"), 0o640);
    const logsBefore = server.logs().length;
    await server.restart();
    expect(mode(meta)).toBe(0o700);
    expect(mode(data)).toBe(0o700);
    for (const f of readdirSync(meta)) expect([f, mode(join(meta, f))]).toEqual([f, 0o600]);
    const lines = server
      .logs()
      .slice(logsBefore)
      .split("\n")
      .filter((l) => l.includes("removed group/other access"));
    expect(lines).toHaveLength(1);
    for (const part of [`${meta} 0755->0700`, `${join(meta, "db.sqlite")} 0644->0600`, `${join(meta, "node_key")} 0640->0600`, `${data} 0755->0700`])
      expect(lines[0]).toContain(part);
  });
});

test("no admin token: the node says at start-up that its admin API is disabled", async () => {
  const dir = tempDir();
  const [s3, admin, rpc] = [await freePort(), await freePort(), await freePort()];
  const configPath = join(dir, "bunker.toml");
  writeFileSync(
    configPath,
    `metadata_dir = "${join(dir, "meta")}"\ndata_dir = "${join(dir, "data")}"\nrpc_bind_addr = "127.0.0.1:${rpc}"\n[s3_api]\napi_bind_addr = "127.0.0.1:${s3}"\n[admin]\napi_bind_addr = "127.0.0.1:${admin}"\n`,
  );
  const env: Record<string, string | undefined> = { ...process.env, BUNKER_LOG: "warn" };
  delete env.BUNKER_ADMIN_TOKEN;
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "-c", configPath, "server"], { cwd: dir, stdout: "pipe", stderr: "pipe", env });
  const stderr = new Response(proc.stderr).text();
  try {
    const deadline = Date.now() + EXIT_DEADLINE_MS;
    for (;;) {
      const up = await fetch(`http://127.0.0.1:${admin}/health`).then(
        () => true,
        () => false,
      );
      if (up) break;
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start: ${await stderr}`);
      await Bun.sleep(50);
    }
    const r = await fetch(`http://127.0.0.1:${admin}/v2/ListKeys`, { headers: { authorization: "Bearer anything" } });
    expect(r.status).toBe(403);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  const lines = (await stderr).split("\n").filter((l) => l.includes("admin API disabled"));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("no admin token configured");
});

/**
 * Idle RSS of a node started from source the way tests start it (`bun src/main.ts`, the test
 * config with its web endpoint). From source the runtime also holds the transpiled sources, so
 * this is higher than the compiled binary's figure, which benchmarks/footprint/startup.ts
 * measures against issue 13's 50 MiB. Measured here, ~40 MiB from source once the node has
 * dropped start-up's pages of the executable (src/cli/startup-pages.ts; ~65 MiB before, 83 MiB
 * before the worker isolates were started on demand); the bound leaves room for a loaded machine.
 */
const IDLE_RSS_FROM_SOURCE_MIB = 60;
/** Idle means after start-up's one-off work, which ends with dropping start-up's pages. */
const IDLE_SETTLE_MS = RELEASE_STARTUP_PAGES_DELAY_MS + 2_000;

test("a node that has started and serves nothing stays within its idle RSS bound", async () => {
  const server = await startServer();
  try {
    await Bun.sleep(IDLE_SETTLE_MS);
    let peakKiB = 0;
    for (let i = 0; i < 5; i++) {
      peakKiB = Math.max(peakKiB, statusKiB(server.proc.pid, "VmRSS"));
      await Bun.sleep(200);
    }
    expect(peakKiB).toBeGreaterThan(0); // the process was there to be measured
    expect(peakKiB / 1024).toBeLessThanOrEqual(IDLE_RSS_FROM_SOURCE_MIB);
  } finally {
    await server.stop();
  }
});
