import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, credentialsPath, loadConfig, parseHostPort, parseSize } from "../../../src/config.ts";

const ENV_KEYS = [
  "BUNKER_RPC_SECRET",
  "GARAGE_RPC_SECRET",
  "BUNKER_ADMIN_TOKEN",
  "BUNKER_METRICS_TOKEN",
  "BUNKER_ALLOW_WORLD_READABLE_SECRETS",
  "GARAGE_ALLOW_WORLD_READABLE_SECRETS",
];
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
    expect(c.compression_level).toBe(1);
    expect(c.metadata_fsync).toBe(false);
    expect(c.data_fsync).toBe(false);
    expect(c.rpc_bind_addr).toBe("[::]:3901");
    expect(c.rpc_secret).toBeUndefined();
    expect(c.bootstrap_peers).toEqual([]);
    expect(c.s3_api).toEqual({ api_bind_addr: "[::]:3900", s3_region: "garage", root_domain: undefined });
    expect(c.s3_web).toEqual({ bind_addr: "[::]:3902", root_domain: "web.localhost" });
    // The admin API can do everything and serves /metrics: this machine only, by default.
    expect(c.admin).toEqual({ api_bind_addr: "127.0.0.1:3903", admin_token: undefined });
  });

  test("minimal file: defaults for everything but the directories", async () => {
    const c = await load(BASE);
    expect(c.embedded_defaults).toBe(false);
    expect(c.metadata_dir).toBe("/var/lib/bunker/meta");
    expect(c.data_dir).toBe("/var/lib/bunker/data");
    expect(c.block_size).toBe(1048576);
    expect(c.compression_level).toBe(1);
    expect(credentialsPath(c)).toBe("/var/lib/bunker/credentials");
    expect(c.admin.api_bind_addr).toBe("127.0.0.1:3903");
    expect(c.s3_web).toBeUndefined();
  });

  test("relative directories resolve against the config file's directory", async () => {
    const c = await load(`metadata_dir = "meta"\ndata_dir = "./blocks"\n`);
    expect(c.metadata_dir).toBe(join(dir, "meta"));
    expect(c.data_dir).toBe(join(dir, "blocks"));
  });

  test("Garage's full example file (v2 configuration reference) is accepted, with one warning per unused key", async () => {
    const warnings: string[] = [];
    await writeFile(join(dir, "metrics_token"), "some-metrics-token\n", { mode: 0o600 });
    const c = await load(
      `replication_factor = 3
consistency_mode = "consistent"

metadata_dir = "/var/lib/garage/meta"
data_dir = "/var/lib/garage/data"
metadata_snapshots_dir = "/var/lib/garage/snapshots"
metadata_fsync = true
data_fsync = false
disable_scrub = false
use_local_tz = false
metadata_auto_snapshot_interval = "6h"

db_engine = "lmdb"

block_size = "1M"
block_ram_buffer_max = "256MiB"

lmdb_map_size = "1T"

compression_level = 1

rpc_secret = "${SECRET}"
rpc_bind_addr = "[::]:3901"
rpc_bind_outgoing = false
rpc_public_addr = "[fc00:1::1]:3901"

allow_world_readable_secrets = false

bootstrap_peers = [
    "563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d@[fc00:1::1]:3901",
    "86f0f26ae4afbd59aaf9cfb059eefac844951efd5b8caeec0d53f4ed6c85f332@[fc00:1::2]:3901",
    "681456ab91350f92242e80a531a3ec9392cb7c974f72640112f90a600d7921a4@[fc00:B::1]:3901",
    "212fd62eeaca72c122b45a7f4fa0f55e012aa5e24ac384a72a3016413fa724ff@[fc00:F::1]:3901",
]

allow_punycode = false

[consul_discovery]
api = "catalog"
consul_http_addr = "http://127.0.0.1:8500"
service_name = "garage-daemon"
ca_cert = "/etc/consul/consul-ca.crt"
client_cert = "/etc/consul/consul-client.crt"
client_key = "/etc/consul/consul-key.crt"
tls_skip_verify = false
tags = [ "dns-enabled" ]
meta = { dns-acl = "allow trusted" }

[kubernetes_discovery]
namespace = "garage"
service_name = "garage-daemon"
skip_crd = false

[s3_api]
api_bind_addr = "[::]:3900"
s3_region = "garage"
root_domain = ".s3.garage"

[s3_web]
bind_addr = "[::]:3902"
root_domain = ".web.garage"
add_host_to_metrics = true

[k2v_api]
api_bind_addr = "[::]:3904"

[admin]
api_bind_addr = "0.0.0.0:3903"
metrics_token_file = "metrics_token"
metrics_require_token = true
admin_token = "UkLeGWEvHnXBqnueR3ISEMWpOnm40jH2tM2HnnL/0F4="
trace_sink = "http://localhost:4317"
`,
      warnings,
    );
    const ignored = [
      "metadata_snapshots_dir",
      "disable_scrub",
      "use_local_tz",
      "metadata_auto_snapshot_interval",
      "db_engine",
      "lmdb_map_size",
      "rpc_bind_outgoing",
      "allow_punycode",
      ...["api", "consul_http_addr", "service_name", "ca_cert", "client_cert", "client_key", "tls_skip_verify", "tags", "meta"].map((k) => `consul_discovery.${k}`),
      ...["namespace", "service_name", "skip_crd"].map((k) => `kubernetes_discovery.${k}`),
      "s3_web.add_host_to_metrics",
      "k2v_api.api_bind_addr",
      "admin.trace_sink",
    ];
    expect(warnings.map((w) => w.split(":")[1]!.trim())).toEqual(ignored);
    for (const w of warnings) expect(w).toMatch(/^config: [a-z0-9_.]+: Garage setting not used by Bunker, ignored( \(.+\))?$/);
    expect(warnings).toContain("config: metadata_auto_snapshot_interval: Garage setting not used by Bunker, ignored (no metadata snapshots are taken)");
    expect(c.replication_factor).toBe(3);
    expect(c.consistency_mode).toBe("consistent");
    expect(c.metadata_fsync).toBe(true);
    expect(c.rpc_secret).toBe(SECRET);
    expect(c.rpc_public_addr).toBe("[fc00:1::1]:3901");
    expect(c.bootstrap_peers).toHaveLength(4);
    // The leading dot of Garage's examples is dropped: hosts are matched as "<bucket>." + domain.
    expect(c.s3_api).toEqual({ api_bind_addr: "[::]:3900", s3_region: "garage", root_domain: "s3.garage" });
    expect(c.s3_web).toEqual({ bind_addr: "[::]:3902", root_domain: "web.garage" });
    expect(c.admin).toEqual({ api_bind_addr: "0.0.0.0:3903", admin_token: "UkLeGWEvHnXBqnueR3ISEMWpOnm40jH2tM2HnnL/0F4=", metrics_token: "some-metrics-token" });
  });

  test("an empty Garage-only section is warned about by name", async () => {
    const warnings: string[] = [];
    await load(BASE + `[k2v_api]\n`, warnings);
    expect(warnings).toEqual(["config: k2v_api: Garage setting not used by Bunker, ignored"]);
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

  test("block_ram_buffer_max: 64 MiB (or 8 blocks) by default, a size, at least 8 blocks; else one line naming it", async () => {
    expect((await load(BASE)).block_ram_buffer_max).toBe(64 * 1048576);
    expect((await load(BASE + `block_size = "16M"\n`)).block_ram_buffer_max).toBe(128 * 1048576);
    expect((await load(BASE + `block_ram_buffer_max = "256MiB"\n`)).block_ram_buffer_max).toBe(256 * 1048576);
    expect((await load(BASE + `block_size = "1M"\nblock_ram_buffer_max = 8388608\n`)).block_ram_buffer_max).toBe(8 * 1048576);
    expect(await refused(BASE + `block_ram_buffer_max = "7MiB"\n`)).toBe(
      "config: block_ram_buffer_max: must be at least 8 blocks (8 x block_size = 8388608 bytes; got 7340032)",
    );
    expect(await refused(BASE + `block_size = "16M"\nblock_ram_buffer_max = "64M"\n`)).toStartWith("config: block_ram_buffer_max: must be at least 8 blocks");
    expect(await refused(BASE + `block_ram_buffer_max = "lots"\n`)).toStartWith("config: block_ram_buffer_max: cannot read size");
    expect(await refused(BASE + `block_ram_buffer_max = 0\n`)).toStartWith("config: block_ram_buffer_max:");
  });

  test("block_size accepts plain bytes and size strings", async () => {
    expect((await load(BASE + `block_size = "1M"\n`)).block_size).toBe(1048576);
    expect((await load(BASE + `block_size = "10MiB"\n`)).block_size).toBe(10 * 1048576);
    expect((await load(BASE + `block_size = 262144\n`)).block_size).toBe(262144);
  });

  test("an unknown key stops start-up in one line naming it, its section and the nearest known key", async () => {
    expect(await refused(BASE + `[s3_api]\napi_bind_adr = "127.0.0.1:19300"\n`)).toBe(
      "config: s3_api.api_bind_adr: unknown key (did you mean api_bind_addr?)",
    );
    expect(await refused(BASE + `[admn]\nadmin_token = "x"\n`)).toBe("config: admn: unknown section (did you mean admin?)");
    expect(await refused(BASE + `metadata_fsnyc = true\n`)).toBe("config: metadata_fsnyc: unknown key (did you mean metadata_fsync?)");
    expect(await refused(BASE + `[admin]\nmetrics_tokn = "x"\n`)).toBe("config: admin.metrics_tokn: unknown key (did you mean metrics_token?)");
    expect(await refused(BASE + `[s3_web]\nbind_addr = "[::]:3902"\nindex = "index.html"\n`)).toBe("config: s3_web.index: unknown key");
    // Inside a Garage-only section too: the key is checked against Garage's list.
    expect(await refused(BASE + `[k2v_api]\napi_bind_adr = "[::]:3904"\n`)).toBe("config: k2v_api.api_bind_adr: unknown key (did you mean api_bind_addr?)");
    expect(await refused(BASE + `no_such_option = 42\n`)).toBe("config: no_such_option: unknown key");
  });

  test("Garage keys that would weaken the node are refused, not ignored", async () => {
    expect(await refused(BASE + `replication_mode = "3"\n`)).toContain("config: replication_mode: ");
    expect(await refused(`metadata_dir = "/m"\ndata_dir = [{ path = "/d1", capacity = "1T" }, { path = "/d2", capacity = "1T" }]\n`)).toContain(
      "config: data_dir: several data directories",
    );
    // Garage v2 would still take API-created tokens; Bunker has none, so /metrics would be public.
    expect(await refused(BASE + `[admin]\nmetrics_require_token = true\n`)).toContain("config: admin.metrics_require_token: ");
    expect((await load(BASE + `[admin]\nmetrics_require_token = true\nmetrics_token = "m"\n`)).admin.metrics_token).toBe("m");
  });

  test("[s3_web] without bind_addr is refused rather than serving no website", async () => {
    expect(await refused(BASE + `[s3_web]\nroot_domain = ".web.example.com"\n`)).toBe("config: s3_web.bind_addr: required in [s3_web]");
  });

  test("every address is checked before anything is started", async () => {
    expect(await refused(BASE + `[admin]\napi_bind_addr = "127.0.0.1:99999"\n`)).toContain("config: admin.api_bind_addr: port out of range");
    expect(await refused(BASE + `[s3_api]\napi_bind_addr = "[::]:70000"\n`)).toContain("config: s3_api.api_bind_addr: ");
    expect(await refused(BASE + `[s3_web]\nbind_addr = "web:port"\n`)).toContain("config: s3_web.bind_addr: ");
    expect(await refused(BASE + `rpc_bind_addr = "[not-ipv6]:3901"\n`)).toContain("config: rpc_bind_addr: ");
    expect(await refused(BASE + `rpc_bind_addr = "my host:3901"\n`)).toContain("config: rpc_bind_addr: ");
    expect(await refused(BASE + `[s3_api]\napi_bind_addr = "/run/bunker.sock"\n`)).toContain("unix sockets are not supported");
    expect(await refused(BASE + `rpc_public_addr = "[::]:3901"\n`)).toContain("config: rpc_public_addr: ");
    expect(await refused(BASE + `rpc_public_addr = "192.0.2.1:0"\n`)).toContain("config: rpc_public_addr: ");
    expect(await refused(BASE + `rpc_public_addr = "192.0.2.1:65536"\n`)).toContain("config: rpc_public_addr: ");
    expect(await refused(BASE + `rpc_public_addr = "300.0.2.1:3901"\n`)).toContain("config: rpc_public_addr: ");
    const id = "563e1ac825ee3323aa441e72c26d1030d6d4414aeb3dd25287c531e7fc2bc95d";
    expect(await refused(BASE + `bootstrap_peers = ["${id}@10.0.0.1:3901", "abc@10.0.0.2:3901"]\n`)).toContain("config: bootstrap_peers[1]: expected <node id (64 hex)>@<host>:<port>");
    expect(await refused(BASE + `bootstrap_peers = ["${id}@10.0.0.1:99999"]\n`)).toContain("config: bootstrap_peers[0]: port out of range");
    expect(await refused(BASE + `bootstrap_peers = ["${id}@0.0.0.0:3901"]\n`)).toContain("config: bootstrap_peers[0]: ");
    // Port 0 (any free port) is fine to listen on.
    expect((await load(BASE + `rpc_bind_addr = "127.0.0.1:0"\n`)).rpc_bind_addr).toBe("127.0.0.1:0");
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
    await writeFile(join(dir, "secret"), SECRET + "\n", { mode: 0o600 });
    expect((await load(BASE + `rpc_secret_file = "secret"\n`)).rpc_secret).toBe(SECRET);
    expect(await refused(BASE + `rpc_secret_file = "missing"\n`)).toContain("rpc_secret_file");
    expect(await refused(BASE + `rpc_secret = "${SECRET}"\nrpc_secret_file = "secret"\n`)).toBe(
      "config: rpc_secret_file: only one of rpc_secret and rpc_secret_file can be set",
    );
    process.env.GARAGE_RPC_SECRET = SECRET.toUpperCase();
    expect((await load(BASE)).rpc_secret).toBe(SECRET.toUpperCase());
    process.env.GARAGE_RPC_SECRET = "short";
    expect(await refused(BASE)).toContain("rpc_secret");
  });

  test("admin token from a file", async () => {
    await writeFile(join(dir, "token"), "tok-from-file\n", { mode: 0o600 });
    expect((await load(BASE + `[admin]\nadmin_token_file = "token"\n`)).admin.admin_token).toBe("tok-from-file");
  });

  test.each([
    ["rpc_secret_file", "", SECRET],
    ["admin_token_file", "[admin]\n", "tok"],
    ["metrics_token_file", "[admin]\n", "tok"],
  ])("%s open to group or others is refused unless allow_world_readable_secrets", async (key, section, value) => {
    const file = join(dir, "secret-file");
    await writeFile(file, value + "\n");
    const body = (top: string) => BASE + top + section + `${key} = "secret-file"\n`;
    const name = section ? `admin.${key}` : key;
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      await chmod(file, mode);
      expect(await refused(body(""))).toBe(
        `config: ${name}: ${file} is accessible by group or others (mode 0${mode.toString(8)}, expected 0600): chmod 600 it, or set allow_world_readable_secrets = true`,
      );
    }
    await chmod(file, 0o644);
    await load(body("allow_world_readable_secrets = true\n"));
    process.env.GARAGE_ALLOW_WORLD_READABLE_SECRETS = "true";
    await load(body(""));
    process.env.GARAGE_ALLOW_WORLD_READABLE_SECRETS = "false";
    expect(await refused(body("allow_world_readable_secrets = true\n"))).toContain(name);
    delete process.env.GARAGE_ALLOW_WORLD_READABLE_SECRETS;
    for (const mode of [0o600, 0o400]) {
      await chmod(file, mode);
      await load(body(""));
    }
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
  test.each(["3900", "host", "host:", "::1:3900", "host:port", "host:65536", "[::1]3900", "[nothex]:1", "[]:1", "my host:1", "999.1.1.1:80", "/run/bunker.sock"])("%p is refused", (addr) => {
    expect(() => parseHostPort(addr, "s3_api.api_bind_addr")).toThrow(ConfigError);
    expect(() => parseHostPort(addr, "s3_api.api_bind_addr")).toThrow(/s3_api\.api_bind_addr/);
  });
});
