import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, credentialsPath, loadConfig, parseHostPort, parseSize } from "../../../src/config.ts";

const ENV_KEYS = ["BUNKER_RPC_SECRET", "GARAGE_RPC_SECRET", "BUNKER_ADMIN_TOKEN"];
let dir: string;
let savedEnv: Record<string, string | undefined>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-config-"));
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
});
afterEach(async () => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await rm(dir, { recursive: true, force: true });
});

const BASE = `metadata_dir = "/var/lib/bunker/meta"\ndata_dir = "/var/lib/bunker/data"\n`;
const SECRET = "0123456789abcdef".repeat(4);

async function load(body: string, warnings: string[] = []) {
  const path = join(dir, "bunker.toml");
  await writeFile(path, body);
  return loadConfig(path, (m) => warnings.push(m));
}

/** The ConfigError message of a config that must be refused. */
async function refused(body: string): Promise<string> {
  const err = await load(body).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  const msg = (err as Error).message;
  expect(msg).not.toContain("\n");
  return msg;
}

describe("loadConfig", () => {
  test("no file: embedded defaults relative to the working directory", () => {
    const c = loadConfig(undefined, () => {});
    expect(c.embedded_defaults).toBe(true);
    expect(c.metadata_dir).toBe(join(process.cwd(), "data", "meta"));
    expect(c.data_dir).toBe(join(process.cwd(), "data", "blocks"));
    expect(c.replication_factor).toBe(1);
    expect(c.consistency_mode).toBe("consistent");
    expect(c.block_size).toBe(1024 * 1024);
    expect(c.block_ram_buffer_max).toBe(256 * 1024 * 1024);
    expect(c.compression_level).toBe(1);
    expect(c.metadata_fsync).toBe(false);
    expect(c.data_fsync).toBe(false);
    expect(c.rpc_bind_addr).toBe("[::]:3901");
    expect(c.rpc_secret).toBeUndefined();
    expect(c.bootstrap_peers).toEqual([]);
    expect(c.s3_api).toEqual({ api_bind_addr: "[::]:3900", s3_region: "garage", root_domain: undefined });
    expect(c.s3_web).toEqual({ bind_addr: "[::]:3902", root_domain: "web.localhost" });
    expect(c.admin).toEqual({ api_bind_addr: "[::]:3903", admin_token: undefined });
  });

  test("minimal file: defaults for everything but the directories", async () => {
    const c = await load(BASE);
    expect(c.embedded_defaults).toBe(false);
    expect(c.metadata_dir).toBe("/var/lib/bunker/meta");
    expect(c.data_dir).toBe("/var/lib/bunker/data");
    expect(c.block_size).toBe(1048576);
    expect(c.compression_level).toBe(1);
    expect(credentialsPath(c)).toBe("/var/lib/bunker/credentials");
  });

  test("relative directories resolve against the config file's directory", async () => {
    const c = await load(`metadata_dir = "meta"\ndata_dir = "./blocks"\n`);
    expect(c.metadata_dir).toBe(join(dir, "meta"));
    expect(c.data_dir).toBe(join(dir, "blocks"));
  });

  test("a Garage-style configuration file is accepted", async () => {
    const warnings: string[] = [];
    const c = await load(
      `metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
db_engine = "lmdb"
metadata_auto_snapshot_interval = "6h"
metadata_fsync = true
data_fsync = false
disable_scrub = false
block_size = "1M"
replication_factor = 3
consistency_mode = "degraded"
compression_level = 2
rpc_bind_addr = "[::]:3901"
rpc_public_addr = "192.168.1.10:3901"
rpc_secret = "${SECRET}"
bootstrap_peers = ["563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d@[fc00:1::1]:3901"]

[s3_api]
s3_region = "garage"
api_bind_addr = "[::]:3900"
root_domain = ".s3.garage.localhost"

[s3_web]
bind_addr = "[::]:3902"
root_domain = ".web.garage.localhost"
index = "index.html"

[k2v_api]
api_bind_addr = "[::]:3904"

[admin]
api_bind_addr = "[::]:3903"
admin_token = "some-admin-token"
metrics_token = "some-metrics-token"
`,
      warnings,
    );
    expect(warnings).toEqual([]);
    expect(c.replication_factor).toBe(3);
    expect(c.consistency_mode).toBe("degraded");
    expect(c.compression_level).toBe(2);
    expect(c.metadata_fsync).toBe(true);
    expect(c.rpc_secret).toBe(SECRET);
    expect(c.rpc_public_addr).toBe("192.168.1.10:3901");
    expect(c.bootstrap_peers).toHaveLength(1);
    // The leading dot of Garage's examples is dropped: hosts are matched as "<bucket>." + domain.
    expect(c.s3_api).toEqual({ api_bind_addr: "[::]:3900", s3_region: "garage", root_domain: "s3.garage.localhost" });
    expect(c.s3_web).toEqual({ bind_addr: "[::]:3902", root_domain: "web.garage.localhost" });
    expect(c.admin).toEqual({ api_bind_addr: "[::]:3903", admin_token: "some-admin-token", metrics_token: "some-metrics-token" });
  });

  test("a wrong type is refused in one line naming the key", async () => {
    const msg = await refused(BASE + `replication_factor = "three"\n`);
    expect(msg).toContain("replication_factor");
    expect(msg).toContain("three");
    expect(await refused(BASE + `metadata_fsync = "yes"\n`)).toContain("metadata_fsync");
    expect(await refused(BASE + `[s3_api]\napi_bind_addr = 3900\n`)).toContain("s3_api.api_bind_addr");
  });

  test("out-of-range values are refused", async () => {
    expect(await refused(BASE + `replication_factor = 0\n`)).toContain("replication_factor");
    expect(await refused(BASE + `compression_level = 23\n`)).toContain("compression_level");
    expect(await refused(BASE + `block_size = 1024\n`)).toContain("block_size");
    expect(await refused(BASE + `block_size = "1G"\n`)).toContain("block_size");
    expect(await refused(BASE + `block_size = "1 potato"\n`)).toContain("block_size");
  });

  test("an unknown consistency_mode is refused", async () => {
    const msg = await refused(BASE + `consistency_mode = "eventual"\n`);
    expect(msg).toContain("consistency_mode");
    expect(msg).toContain("eventual");
  });

  test('compression_level = "none" turns compression off; a level is kept', async () => {
    expect((await load(BASE + `compression_level = "none"\n`)).compression_level).toBeNull();
    expect((await load(BASE + `compression_level = 19\n`)).compression_level).toBe(19);
    expect((await load(BASE + `compression_level = -5\n`)).compression_level).toBe(-5);
  });

  test("block_size accepts plain bytes and size strings", async () => {
    expect((await load(BASE + `block_size = "1M"\n`)).block_size).toBe(1048576);
    expect((await load(BASE + `block_size = "10MiB"\n`)).block_size).toBe(10 * 1048576);
    expect((await load(BASE + `block_size = 262144\n`)).block_size).toBe(262144);
    expect((await load(BASE + `block_ram_buffer_max = "1GiB"\n`)).block_ram_buffer_max).toBe(1 << 30);
  });

  test("an unknown top-level key only warns", async () => {
    const warnings: string[] = [];
    const c = await load(BASE + `no_such_option = 42\n`, warnings);
    expect(c.metadata_dir).toBe("/var/lib/bunker/meta");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("no_such_option");
  });

  test("missing metadata_dir or data_dir is refused", async () => {
    expect(await refused(`data_dir = "/d"\n`)).toContain("metadata_dir");
    expect(await refused(`metadata_dir = "/m"\n`)).toContain("data_dir");
  });

  test("a missing file and invalid TOML are refused", async () => {
    expect(() => loadConfig(join(dir, "nope.toml"))).toThrow(ConfigError);
    expect(await refused(`metadata_dir = \n`)).toContain("not valid TOML");
  });

  test("rpc_secret: must be 64 hex; may come from a file or the environment", async () => {
    expect(await refused(BASE + `rpc_secret = "abc"\n`)).toContain("rpc_secret");
    await writeFile(join(dir, "secret"), SECRET + "\n");
    expect((await load(BASE + `rpc_secret_file = "secret"\n`)).rpc_secret).toBe(SECRET);
    expect(await refused(BASE + `rpc_secret_file = "missing"\n`)).toContain("rpc_secret_file");
    process.env.GARAGE_RPC_SECRET = SECRET.toUpperCase();
    expect((await load(BASE)).rpc_secret).toBe(SECRET.toUpperCase());
    process.env.GARAGE_RPC_SECRET = "short";
    expect(await refused(BASE)).toContain("rpc_secret");
  });

  test("admin token from a file", async () => {
    await writeFile(join(dir, "token"), "tok-from-file\n");
    expect((await load(BASE + `[admin]\nadmin_token_file = "token"\n`)).admin.admin_token).toBe("tok-from-file");
  });
});

describe("parseSize", () => {
  test.each([
    [4096, 4096],
    ["4096", 4096],
    ["1k", 1024],
    ["1K", 1024],
    ["1KiB", 1024],
    ["1KB", 1000],
    ["1M", 1048576],
    ["10MiB", 10485760],
    ["1.5M", 1572864],
    ["2G", 2 * 1024 ** 3],
    [" 3 MiB ", 3 * 1048576],
  ] as const)("%p -> %p", (input, bytes) => {
    expect(parseSize(input, "k")).toBe(bytes);
  });
  test("garbage is a ConfigError naming the key", () => {
    expect(() => parseSize("lots", "block_size")).toThrow(/block_size/);
    expect(() => parseSize("1X", "block_size")).toThrow(ConfigError);
  });
});

describe("parseHostPort", () => {
  test.each([
    ["127.0.0.1:3900", "127.0.0.1", 3900],
    ["[::]:3900", "::", 3900],
    ["[::1]:80", "::1", 80],
    [":3900", "0.0.0.0", 3900],
    ["localhost:1", "localhost", 1],
    ["  example.com:65535 ", "example.com", 65535],
  ] as const)("%p", (addr, host, port) => {
    expect(parseHostPort(addr, "k")).toEqual({ host, port });
  });
  test.each(["3900", "host", "host:", "::1:3900", "host:port", "host:65536", "[::1]3900"])("%p is refused", (addr) => {
    expect(() => parseHostPort(addr, "s3_api.api_bind_addr")).toThrow(ConfigError);
    expect(() => parseHostPort(addr, "s3_api.api_bind_addr")).toThrow(/s3_api\.api_bind_addr/);
  });
});
