// Configuration: Garage-compatible TOML keys, validated with typebox, with embedded
// defaults so `bunker server` works with no file at all.
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export class ConfigError extends Error {}

const SizeSchema = Type.Union([Type.Integer({ minimum: 1 }), Type.String()]);
const BindAddrSchema = Type.String({ minLength: 1 });

const FileSchema = Type.Object({
  metadata_dir: Type.Optional(Type.String({ minLength: 1 })),
  data_dir: Type.Optional(Type.String({ minLength: 1 })),
  db_engine: Type.Optional(Type.Union([Type.Literal("sqlite"), Type.Literal("lmdb")])),
  replication_factor: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 })),
  consistency_mode: Type.Optional(
    Type.Union([Type.Literal("consistent"), Type.Literal("degraded"), Type.Literal("dangerous")]),
  ),
  block_size: Type.Optional(SizeSchema),
  block_ram_buffer_max: Type.Optional(SizeSchema),
  compression_level: Type.Optional(Type.Union([Type.Integer({ minimum: -99, maximum: 22 }), Type.Literal("none")])),
  metadata_fsync: Type.Optional(Type.Boolean()),
  data_fsync: Type.Optional(Type.Boolean()),
  rpc_bind_addr: Type.Optional(BindAddrSchema),
  rpc_public_addr: Type.Optional(BindAddrSchema),
  rpc_secret: Type.Optional(Type.String({ pattern: "^[0-9a-fA-F]{64}$" })),
  rpc_secret_file: Type.Optional(Type.String()),
  bootstrap_peers: Type.Optional(Type.Array(Type.String())),
  s3_api: Type.Optional(
    Type.Object({
      api_bind_addr: Type.Optional(BindAddrSchema),
      s3_region: Type.Optional(Type.String({ minLength: 1 })),
      root_domain: Type.Optional(Type.String()),
    }),
  ),
  s3_web: Type.Optional(
    Type.Object({
      bind_addr: Type.Optional(BindAddrSchema),
      root_domain: Type.Optional(Type.String()),
      index: Type.Optional(Type.String()),
    }),
  ),
  admin: Type.Optional(
    Type.Object({
      api_bind_addr: Type.Optional(BindAddrSchema),
      admin_token: Type.Optional(Type.String({ minLength: 1 })),
      admin_token_file: Type.Optional(Type.String()),
      metrics_token: Type.Optional(Type.String({ minLength: 1 })),
      metrics_token_file: Type.Optional(Type.String()),
    }),
  ),
});
type FileConfig = Static<typeof FileSchema>;

export interface Config {
  metadata_dir: string;
  data_dir: string;
  replication_factor: number;
  consistency_mode: "consistent" | "degraded" | "dangerous";
  block_size: number;
  block_ram_buffer_max: number;
  /** zstd level, or null when compression is off. */
  compression_level: number | null;
  metadata_fsync: boolean;
  data_fsync: boolean;
  rpc_bind_addr: string;
  rpc_public_addr?: string;
  rpc_secret?: string;
  bootstrap_peers: string[];
  s3_api: { api_bind_addr: string; s3_region: string; root_domain?: string };
  /** Absent when the config file has no `[s3_web] bind_addr`: no web endpoint then. */
  s3_web?: { bind_addr: string; root_domain?: string };
  /** metrics_token: when set, /metrics asks for it as a bearer token; else /metrics is public. */
  admin: { api_bind_addr: string; admin_token?: string; metrics_token?: string };
  /** True when no config file was given: the server then creates credentials on first start. */
  embedded_defaults: boolean;
}

export const DEFAULT_DATA_ROOT = "data";
export const DEFAULT_WEB_ROOT_DOMAIN = "web.localhost";
export const MIN_BLOCK_SIZE = 64 * 1024;
export const MAX_BLOCK_SIZE = 64 * 1024 * 1024;

const KNOWN_TOP_KEYS = new Set([
  ...Object.keys(FileSchema.properties),
  // Garage keys we accept and do not use (yet): they must not stop a Garage user's start-up.
  "metadata_snapshots_dir", "metadata_auto_snapshot_interval", "disable_scrub", "use_local_tz",
  "lmdb_map_size", "rpc_bind_outgoing", "rpc_public_addr_subnet", "rpc_ping_timeout_msec", "rpc_timeout_msec",
  "allow_world_readable_secrets", "allow_punycode", "consul_discovery", "kubernetes_discovery", "k2v_api",
]);

/** Parses "1M", "10MiB", "256k", "2G" or a plain number of bytes. */
export function parseSize(value: number | string, key: string): number {
  if (typeof value === "number") return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$/i.exec(value);
  if (!m) throw new ConfigError(`config: ${key}: cannot read size "${value}" (use e.g. 1048576, "1M" or "10MiB")`);
  const unit = m[2]!.toLowerCase();
  const binary = m[3]!.toLowerCase().startsWith("i") || m[3] === "";
  const base = binary ? 1024 : 1000;
  const power = { "": 0, k: 1, m: 2, g: 3, t: 4 }[unit]!;
  return Math.round(Number(m[1]) * base ** power);
}

function firstSchemaError(raw: unknown): string | undefined {
  const err = Value.Errors(FileSchema, raw).First();
  if (!err) return undefined;
  const key = err.path.replace(/^\//, "").replaceAll("/", ".") || "(root)";
  const literals = (err.schema.anyOf as { const?: unknown }[] | undefined)?.map((s) => s.const).filter((c) => c !== undefined);
  if (literals && literals.length > 0 && literals.length === (err.schema.anyOf as unknown[]).length)
    return `config: ${key}: expected one of ${literals.map((l) => JSON.stringify(l)).join(", ")} (got ${JSON.stringify(err.value)})`;
  return `config: ${key}: ${err.message}${err.value !== undefined ? ` (got ${JSON.stringify(err.value)})` : ""}`;
}

function readSecretFile(path: string, key: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw new ConfigError(`config: ${key}: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Garage's examples write root domains with a leading dot (".s3.garage"); hosts are matched
 * against "<bucket>." + the domain, so the dot is dropped here once. */
function rootDomain(raw: string | undefined): string | undefined {
  const domain = raw?.trim().replace(/^\.+/, "").toLowerCase();
  return domain === "" ? undefined : domain;
}

/** Loads and validates a config; `path` undefined means the embedded defaults. */
export function loadConfig(path?: string, warn: (msg: string) => void = (m) => console.error(m)): Config {
  let raw: FileConfig = {};
  let baseDir = process.cwd();
  if (path !== undefined) {
    if (!existsSync(path)) throw new ConfigError(`config: file not found: ${path}`);
    try {
      raw = Bun.TOML.parse(readFileSync(path, "utf8")) as FileConfig;
    } catch (e) {
      throw new ConfigError(`config: ${path} is not valid TOML: ${(e as Error).message.split("\n")[0]}`);
    }
    baseDir = dirname(resolve(path));
    const schemaError = firstSchemaError(raw);
    if (schemaError) throw new ConfigError(schemaError);
    for (const key of Object.keys(raw)) {
      if (!KNOWN_TOP_KEYS.has(key)) warn(`config: unknown key "${key}" ignored`);
    }
    if (raw.metadata_dir === undefined) throw new ConfigError("config: metadata_dir: required");
    if (raw.data_dir === undefined) throw new ConfigError("config: data_dir: required");
  }
  const dir = (p: string | undefined, fallback: string) => resolve(baseDir, p ?? fallback);

  const blockSize = parseSize(raw.block_size ?? 1024 * 1024, "block_size");
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE)
    throw new ConfigError(`config: block_size: must be between ${MIN_BLOCK_SIZE} and ${MAX_BLOCK_SIZE} bytes (got ${blockSize})`);
  const compression = raw.compression_level ?? 1;

  let rpcSecret = raw.rpc_secret ?? process.env.BUNKER_RPC_SECRET ?? process.env.GARAGE_RPC_SECRET;
  if (rpcSecret === undefined && raw.rpc_secret_file !== undefined)
    rpcSecret = readSecretFile(resolve(baseDir, raw.rpc_secret_file), "rpc_secret_file");
  if (rpcSecret !== undefined && !/^[0-9a-fA-F]{64}$/.test(rpcSecret))
    throw new ConfigError("config: rpc_secret: must be 64 hex characters (32 bytes)");

  let metricsToken = raw.admin?.metrics_token ?? process.env.BUNKER_METRICS_TOKEN;
  if (metricsToken === undefined && raw.admin?.metrics_token_file !== undefined)
    metricsToken = readSecretFile(resolve(baseDir, raw.admin.metrics_token_file), "admin.metrics_token_file");

  let adminToken = raw.admin?.admin_token ?? process.env.BUNKER_ADMIN_TOKEN;
  if (adminToken === undefined && raw.admin?.admin_token_file !== undefined)
    adminToken = readSecretFile(resolve(baseDir, raw.admin.admin_token_file), "admin.admin_token_file");

  return {
    metadata_dir: dir(raw.metadata_dir, join(DEFAULT_DATA_ROOT, "meta")),
    data_dir: dir(raw.data_dir, join(DEFAULT_DATA_ROOT, "blocks")),
    replication_factor: raw.replication_factor ?? 1,
    consistency_mode: raw.consistency_mode ?? "consistent",
    block_size: blockSize,
    block_ram_buffer_max: parseSize(raw.block_ram_buffer_max ?? 256 * 1024 * 1024, "block_ram_buffer_max"),
    compression_level: compression === "none" ? null : compression,
    metadata_fsync: raw.metadata_fsync ?? false,
    data_fsync: raw.data_fsync ?? false,
    rpc_bind_addr: raw.rpc_bind_addr ?? "[::]:3901",
    rpc_public_addr: raw.rpc_public_addr,
    rpc_secret: rpcSecret,
    bootstrap_peers: raw.bootstrap_peers ?? [],
    s3_api: {
      api_bind_addr: raw.s3_api?.api_bind_addr ?? "[::]:3900",
      s3_region: raw.s3_api?.s3_region ?? "garage",
      root_domain: rootDomain(raw.s3_api?.root_domain),
    },
    // Without a config file the web endpoint is on, under "web.localhost": browsers send
    // *.localhost to this machine, so http://<bucket>.web.localhost:3902/ works as is.
    s3_web: raw.s3_web?.bind_addr
      ? { bind_addr: raw.s3_web.bind_addr, root_domain: rootDomain(raw.s3_web.root_domain) }
      : path === undefined
        ? { bind_addr: "[::]:3902", root_domain: DEFAULT_WEB_ROOT_DOMAIN }
        : undefined,
    admin: { api_bind_addr: raw.admin?.api_bind_addr ?? "[::]:3903", admin_token: adminToken, ...(metricsToken !== undefined ? { metrics_token: metricsToken } : {}) },
    embedded_defaults: path === undefined,
  };
}

/** Where the first-start credentials live: next to the metadata, readable by the owner only. */
export function credentialsPath(config: Config): string {
  return join(dirname(config.metadata_dir), "credentials");
}

export interface Credentials {
  adminToken: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export function readCredentials(config: Config): Credentials | undefined {
  const path = credentialsPath(config);
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Credentials;
  } catch {
    return undefined;
  }
}

/** Splits "host:port", "[::]:3900" or ":3900" into parts for listen()/connect(). */
export function parseHostPort(addr: string, key: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr.trim());
  if (!m) throw new ConfigError(`config: ${key}: expected host:port, got "${addr}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`config: ${key}: port out of range in "${addr}"`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}
