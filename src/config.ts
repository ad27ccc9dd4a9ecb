// Configuration: Garage-compatible TOML keys with embedded defaults, so `bunker server` works
// with no file at all. Owns which keys exist (Bunker's, and the Garage ones Bunker ignores
// with a warning), the check of every value before anything is written to disk, and the
// reading of secret files. Every mistake is one `config: <key>: ...` line.
import { Type, type Static, type TObject } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { existsSync, readFileSync, statSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { dirname, join, resolve } from "node:path";
import { parsePeerAddress, PeerAddressError } from "./cluster/system";
import { nearestWord } from "./util/edit-distance";
import { DEFAULT_BLOCK_RAM_BUFFER_MAX, MIN_BUDGET_BLOCKS } from "./util/memory-budget";
import { GROUP_OTHER_BITS } from "./util/private-files";

export class ConfigError extends Error {}

const SizeSchema = Type.Union([Type.Integer({ minimum: 1 }), Type.String()]);
const BindAddrSchema = Type.String({ minLength: 1 });

/** The keys Bunker implements. Every other key is either in GARAGE_ONLY or refused. */
const FileSchema = Type.Object({
  metadata_dir: Type.Optional(Type.String({ minLength: 1 })),
  data_dir: Type.Optional(Type.String({ minLength: 1 })),
  replication_factor: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 })),
  consistency_mode: Type.Optional(
    Type.Union([Type.Literal("consistent"), Type.Literal("degraded"), Type.Literal("dangerous")]),
  ),
  block_size: Type.Optional(SizeSchema),
  block_ram_buffer_max: Type.Optional(SizeSchema),
  compression_level: Type.Optional(Type.Union([Type.Integer({ minimum: -99, maximum: 22 }), Type.Literal("none")])),
  metadata_fsync: Type.Optional(Type.Boolean()),
  data_fsync: Type.Optional(Type.Boolean()),
  allow_world_readable_secrets: Type.Optional(Type.Boolean()),
  rpc_bind_addr: Type.Optional(BindAddrSchema),
  rpc_public_addr: Type.Optional(BindAddrSchema),
  rpc_secret: Type.Optional(Type.String({ pattern: "^[0-9a-fA-F]{64}$" })),
  rpc_secret_file: Type.Optional(Type.String({ minLength: 1 })),
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
    }),
  ),
  admin: Type.Optional(
    Type.Object({
      api_bind_addr: Type.Optional(BindAddrSchema),
      admin_token: Type.Optional(Type.String({ minLength: 1 })),
      admin_token_file: Type.Optional(Type.String({ minLength: 1 })),
      metrics_token: Type.Optional(Type.String({ minLength: 1 })),
      metrics_token_file: Type.Optional(Type.String({ minLength: 1 })),
      metrics_require_token: Type.Optional(Type.Boolean()),
    }),
  ),
});
type FileConfig = Static<typeof FileSchema>;

/** Sections of the file Bunker reads keys from. */
const BUNKER_SECTIONS = ["s3_api", "s3_web", "admin"] as const;

/**
 * Garage's configuration keys (v2.0: doc/book/reference-manual/configuration.md and
 * src/util/config.rs) that Bunker does not use, per section ("" is the top level), with why
 * when it helps. They are accepted, so that a Garage file starts Bunker, with one warning each.
 * None of them weakens what Bunker does: the ones that would are refused (REFUSED_GARAGE_KEYS)
 * or implemented (allow_world_readable_secrets, metrics_require_token).
 */
const GARAGE_ONLY: Record<string, Record<string, string>> = {
  "": {
    metadata_snapshots_dir: "no metadata snapshots are taken",
    metadata_auto_snapshot_interval: "no metadata snapshots are taken",
    disable_scrub: "blocks are always scrubbed",
    use_local_tz: "",
    db_engine: "metadata is always in SQLite",
    lmdb_map_size: "metadata is always in SQLite",
    rpc_bind_outgoing: "",
    rpc_public_addr_subnet: "set rpc_public_addr",
    rpc_ping_timeout_msec: "",
    rpc_timeout_msec: "",
    allow_punycode: "",
  },
  s3_web: { add_host_to_metrics: "" },
  admin: { trace_sink: "no traces are exported" },
  k2v_api: { api_bind_addr: "no K2V API is served" },
  consul_discovery: Object.fromEntries(
    ["api", "consul_http_addr", "service_name", "ca_cert", "client_cert", "client_key", "token", "tls_skip_verify", "tags", "meta"].map((k) => [k, "use bootstrap_peers"]),
  ),
  kubernetes_discovery: Object.fromEntries(["namespace", "service_name", "skip_crd"].map((k) => [k, "use bootstrap_peers"])),
};
/** Whole sections of Garage that Bunker does not serve. */
const GARAGE_ONLY_SECTIONS = new Set(["k2v_api", "consul_discovery", "kubernetes_discovery"]);

/** Garage keys whose silent omission would weaken the node: start-up stops on them. */
const REFUSED_GARAGE_KEYS: Record<string, string> = {
  // Garage v2 refuses it too; ignoring it would run "3" as replication_factor 1.
  replication_mode: "legacy Garage setting, no longer supported: use replication_factor and consistency_mode",
};

export interface Config {
  metadata_dir: string;
  data_dir: string;
  replication_factor: number;
  consistency_mode: "consistent" | "degraded" | "dangerous";
  block_size: number;
  /** Bytes of block buffers a node holds at once (docs/memory.md). */
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
  /** Absent when the config file has no `[s3_web]` section: no web endpoint then. */
  s3_web?: { bind_addr: string; root_domain?: string };
  /** metrics_token: when set, /metrics asks for it as a bearer token; else /metrics is public. */
  admin: { api_bind_addr: string; admin_token?: string; metrics_token?: string };
  /** True when no config file was given: the server then creates credentials on first start. */
  embedded_defaults: boolean;
}

export const DEFAULT_DATA_ROOT = "data";
export const DEFAULT_WEB_ROOT_DOMAIN = "web.localhost";
/** The admin API can change everything and serves /metrics: only this machine reaches it
 * unless `[admin] api_bind_addr` says otherwise. */
export const DEFAULT_ADMIN_BIND_ADDR = "127.0.0.1:3903";
export const MIN_BLOCK_SIZE = 64 * 1024;
export const MAX_BLOCK_SIZE = 64 * 1024 * 1024;

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

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function unknownKey(key: string, what: "key" | "section", candidates: Iterable<string>, section?: string): ConfigError {
  const near = nearestWord(key, candidates);
  return new ConfigError(`config: ${section ? `${section}.` : ""}${key}: unknown ${what}${near ? ` (did you mean ${near}?)` : ""}`);
}

function garageOnly(name: string, reason: string, warn: (msg: string) => void): void {
  warn(`config: ${name}: Garage setting not used by Bunker, ignored${reason ? ` (${reason})` : ""}`);
}

const bunkerSectionKeys = (section: string): string[] =>
  Object.keys((FileSchema.properties[section as keyof typeof FileSchema.properties] as unknown as TObject).properties);

/** Every key is Bunker's, or Garage's (warned about), or a mistake (refused, naming the nearest known key). */
function checkKeys(raw: Record<string, unknown>, warn: (msg: string) => void): void {
  const topKeys = [...Object.keys(FileSchema.properties), ...Object.keys(GARAGE_ONLY[""]!), ...GARAGE_ONLY_SECTIONS, ...Object.keys(REFUSED_GARAGE_KEYS)];
  for (const [key, value] of Object.entries(raw)) {
    if (key in REFUSED_GARAGE_KEYS) throw new ConfigError(`config: ${key}: ${REFUSED_GARAGE_KEYS[key]}`);
    const section = (BUNKER_SECTIONS as readonly string[]).includes(key) || GARAGE_ONLY_SECTIONS.has(key);
    if (section && isTable(value)) {
      const own = GARAGE_ONLY_SECTIONS.has(key) ? [] : bunkerSectionKeys(key);
      const garage = GARAGE_ONLY[key] ?? {};
      for (const sub of Object.keys(value)) {
        if (own.includes(sub)) continue;
        if (sub in garage) garageOnly(`${key}.${sub}`, garage[sub]!, warn);
        else throw unknownKey(sub, "key", [...own, ...Object.keys(garage)], key);
      }
      if (GARAGE_ONLY_SECTIONS.has(key) && Object.keys(value).length === 0) garageOnly(key, "", warn);
    } else if (GARAGE_ONLY_SECTIONS.has(key)) {
      garageOnly(key, "", warn);
    } else if (key in GARAGE_ONLY[""]!) {
      garageOnly(key, GARAGE_ONLY[""]![key]!, warn);
    } else if (!(key in FileSchema.properties)) {
      throw unknownKey(key, isTable(value) ? "section" : "key", topKeys);
    }
  }
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

/** An IPv4 address, a host name, or (between brackets) an IPv6 address. */
function validHost(host: string, bracketed: boolean): boolean {
  if (bracketed) return isIPv6(host);
  if (/^[0-9.]+$/.test(host)) return isIPv4(host);
  return /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/.test(host);
}

/** Splits "host:port", "[::]:3900" or ":3900" (every interface) into parts for listen()/connect(). */
export function parseHostPort(addr: string, key: string): { host: string; port: number } {
  const trimmed = addr.trim();
  if (trimmed.startsWith("/")) throw new ConfigError(`config: ${key}: unix sockets are not supported by Bunker, give host:port (got "${addr}")`);
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(trimmed);
  if (!m) throw new ConfigError(`config: ${key}: expected host:port, got "${addr}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`config: ${key}: port out of range (0..65535) in "${addr}"`);
  const host = m[1] ?? m[2]!;
  const bracketed = m[1] !== undefined;
  if ((host !== "" || bracketed) && !validHost(host, bracketed)) throw new ConfigError(`config: ${key}: not an IP address or host name: "${host}" in "${addr}"`);
  return { host: host || "0.0.0.0", port };
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::"]);

/** An address other nodes dial: a real host and a real port. */
function checkDialAddr(addr: string, key: string): void {
  const { host, port } = parseHostPort(addr, key);
  if (WILDCARD_HOSTS.has(host)) throw new ConfigError(`config: ${key}: "${addr}" is not an address other nodes can dial (give this node's IP or name)`);
  if (port === 0) throw new ConfigError(`config: ${key}: port 0 cannot be dialled in "${addr}"`);
}

function checkPeer(spec: string, key: string): void {
  let peer;
  try {
    peer = parsePeerAddress(spec);
  } catch (e) {
    if (e instanceof PeerAddressError) throw new ConfigError(`config: ${key}: ${e.message}`);
    throw e;
  }
  const addr = peer.host.includes(":") ? `[${peer.host}]:${peer.port}` : `${peer.host}:${peer.port}`;
  checkDialAddr(addr, key);
}

function envFlag(names: string[]): boolean | undefined {
  for (const name of names) {
    const v = process.env[name];
    if (v === undefined || v === "") continue;
    if (/^(true|1)$/i.test(v)) return true;
    if (/^(false|0)$/i.test(v)) return false;
    throw new ConfigError(`config: ${name}: expected true or false (got "${v}")`);
  }
  return undefined;
}

interface SecretSource {
  /** Config key of the value, e.g. "admin.admin_token"; the file's key is this + "_file". */
  key: string;
  value: string | undefined;
  file: string | undefined;
  /** Environment variables that override the file. */
  env: string[];
}

/** A secret from the config, the environment or a file; the file must be the owner's only
 * (no group/other bits, Garage's rule) unless allow_world_readable_secrets. */
function readSecret(s: SecretSource, baseDir: string, allowWorldReadable: boolean): string | undefined {
  if (s.value !== undefined && s.file !== undefined) throw new ConfigError(`config: ${s.key}_file: only one of ${s.key} and ${s.key}_file can be set`);
  if (s.value !== undefined) return s.value;
  for (const name of s.env) if (process.env[name]) return process.env[name];
  if (s.file === undefined) return undefined;
  const path = resolve(baseDir, s.file);
  try {
    const mode = statSync(path).mode;
    if (!allowWorldReadable && (mode & GROUP_OTHER_BITS) !== 0)
      throw new ConfigError(
        `config: ${s.key}_file: ${path} is accessible by group or others (mode 0${(mode & 0o777).toString(8)}, expected 0600): chmod 600 it, or set allow_world_readable_secrets = true`,
      );
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`config: ${s.key}_file: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Garage's examples write root domains with a leading dot (".s3.garage"); hosts are matched
 * against "<bucket>." + the domain, so the dot is dropped here once. */
function rootDomain(raw: string | undefined): string | undefined {
  const domain = raw?.trim().replace(/^\.+/, "").toLowerCase();
  return domain === "" ? undefined : domain;
}

function readFile(path: string, warn: (msg: string) => void): FileConfig {
  if (!existsSync(path)) throw new ConfigError(`config: file not found: ${path}`);
  let raw: unknown;
  try {
    raw = Bun.TOML.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`config: ${path} is not valid TOML: ${(e as Error).message.split("\n")[0]}`);
  }
  const table = raw as Record<string, unknown>;
  checkKeys(table, warn);
  if (Array.isArray(table.data_dir)) throw new ConfigError("config: data_dir: several data directories are not supported by Bunker; give one path");
  const schemaError = firstSchemaError(raw);
  if (schemaError) throw new ConfigError(schemaError);
  const file = raw as FileConfig;
  if (file.metadata_dir === undefined) throw new ConfigError("config: metadata_dir: required");
  if (file.data_dir === undefined) throw new ConfigError("config: data_dir: required");
  if (file.s3_web !== undefined && file.s3_web.bind_addr === undefined) throw new ConfigError("config: s3_web.bind_addr: required in [s3_web]");
  return file;
}

/**
 * Loads and checks a config; `path` undefined means the embedded defaults. Reads files (the
 * config, secret files) and writes nothing: a config that passes here only fails later for
 * reasons of the machine (a port in use, a full disk).
 */
export function loadConfig(path?: string, warn: (msg: string) => void = (m) => console.error(m)): Config {
  const raw: FileConfig = path === undefined ? {} : readFile(path, warn);
  const baseDir = path === undefined ? process.cwd() : dirname(resolve(path));
  const dir = (p: string | undefined, fallback: string) => resolve(baseDir, p ?? fallback);

  const blockSize = parseSize(raw.block_size ?? 1024 * 1024, "block_size");
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE)
    throw new ConfigError(`config: block_size: must be between ${MIN_BLOCK_SIZE} and ${MAX_BLOCK_SIZE} bytes (got ${blockSize})`);
  const compression = raw.compression_level ?? 1;
  // The default grows with a large block_size, to hold MIN_BUDGET_BLOCKS of them.
  const bufferMax = parseSize(raw.block_ram_buffer_max ?? Math.max(DEFAULT_BLOCK_RAM_BUFFER_MAX, MIN_BUDGET_BLOCKS * blockSize), "block_ram_buffer_max");
  if (bufferMax < MIN_BUDGET_BLOCKS * blockSize || !Number.isSafeInteger(bufferMax))
    throw new ConfigError(`config: block_ram_buffer_max: must be at least ${MIN_BUDGET_BLOCKS} blocks (${MIN_BUDGET_BLOCKS} x block_size = ${MIN_BUDGET_BLOCKS * blockSize} bytes; got ${bufferMax})`);

  const rpcBindAddr = raw.rpc_bind_addr ?? "[::]:3901";
  parseHostPort(rpcBindAddr, "rpc_bind_addr");
  if (raw.rpc_public_addr !== undefined) checkDialAddr(raw.rpc_public_addr, "rpc_public_addr");
  (raw.bootstrap_peers ?? []).forEach((spec, i) => checkPeer(spec, `bootstrap_peers[${i}]`));
  const s3Addr = raw.s3_api?.api_bind_addr ?? "[::]:3900";
  parseHostPort(s3Addr, "s3_api.api_bind_addr");
  // Without a config file the web endpoint is on, under "web.localhost": browsers send
  // *.localhost to this machine, so http://<bucket>.web.localhost:3902/ works as is.
  const web = raw.s3_web
    ? { bind_addr: raw.s3_web.bind_addr!, root_domain: rootDomain(raw.s3_web.root_domain) }
    : path === undefined
      ? { bind_addr: "[::]:3902", root_domain: DEFAULT_WEB_ROOT_DOMAIN }
      : undefined;
  if (web) parseHostPort(web.bind_addr, "s3_web.bind_addr");
  const adminAddr = raw.admin?.api_bind_addr ?? DEFAULT_ADMIN_BIND_ADDR;
  parseHostPort(adminAddr, "admin.api_bind_addr");

  const allowWorldReadable =
    envFlag(["BUNKER_ALLOW_WORLD_READABLE_SECRETS", "GARAGE_ALLOW_WORLD_READABLE_SECRETS"]) ?? raw.allow_world_readable_secrets ?? false;
  const rpcSecret = readSecret(
    { key: "rpc_secret", value: raw.rpc_secret, file: raw.rpc_secret_file, env: ["BUNKER_RPC_SECRET", "GARAGE_RPC_SECRET"] },
    baseDir,
    allowWorldReadable,
  );
  if (rpcSecret !== undefined && !/^[0-9a-fA-F]{64}$/.test(rpcSecret))
    throw new ConfigError("config: rpc_secret: must be 64 hex characters (32 bytes)");
  const metricsToken = readSecret(
    { key: "admin.metrics_token", value: raw.admin?.metrics_token, file: raw.admin?.metrics_token_file, env: ["BUNKER_METRICS_TOKEN"] },
    baseDir,
    allowWorldReadable,
  );
  // Garage v2 then also takes admin tokens created through its API; Bunker has none, so
  // without a metrics_token /metrics would be public, the opposite of what was asked for.
  if (raw.admin?.metrics_require_token && metricsToken === undefined)
    throw new ConfigError("config: admin.metrics_require_token: needs admin.metrics_token (or metrics_token_file, or BUNKER_METRICS_TOKEN)");
  const adminToken = readSecret(
    { key: "admin.admin_token", value: raw.admin?.admin_token, file: raw.admin?.admin_token_file, env: ["BUNKER_ADMIN_TOKEN"] },
    baseDir,
    allowWorldReadable,
  );

  return {
    metadata_dir: dir(raw.metadata_dir, join(DEFAULT_DATA_ROOT, "meta")),
    data_dir: dir(raw.data_dir, join(DEFAULT_DATA_ROOT, "blocks")),
    replication_factor: raw.replication_factor ?? 1,
    consistency_mode: raw.consistency_mode ?? "consistent",
    block_size: blockSize,
    block_ram_buffer_max: bufferMax,
    compression_level: compression === "none" ? null : compression,
    metadata_fsync: raw.metadata_fsync ?? false,
    data_fsync: raw.data_fsync ?? false,
    rpc_bind_addr: rpcBindAddr,
    rpc_public_addr: raw.rpc_public_addr,
    rpc_secret: rpcSecret,
    bootstrap_peers: raw.bootstrap_peers ?? [],
    s3_api: { api_bind_addr: s3Addr, s3_region: raw.s3_api?.s3_region ?? "garage", root_domain: rootDomain(raw.s3_api?.root_domain) },
    s3_web: web,
    admin: { api_bind_addr: adminAddr, admin_token: adminToken, ...(metricsToken !== undefined ? { metrics_token: metricsToken } : {}) },
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
