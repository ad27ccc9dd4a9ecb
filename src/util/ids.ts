// Random identifiers: 32-byte uuids (64 hex, as Garage), access key ids and secrets; and the
// branded identifiers that cross the network (block hash, node id, version uuid). All three are
// 64 lowercase hex digits, so only their types tell them apart: a brand makes passing one where
// another is expected a type error, and a parse function is the one way to mint one from text.
import { randomBytes } from "node:crypto";
import { Type, type TUnsafe } from "@sinclair/typebox";

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

/** A 32-byte random id in hex: bucket ids, version ids, upload ids. */
export function newUuid(): string {
  return randomHex(32);
}

export function newAccessKeyId(): string {
  return "GK" + randomHex(12);
}

export function newSecretKey(): string {
  return randomHex(32);
}

export const ACCESS_KEY_ID_RE = /^GK[0-9a-f]{24}$/;
export const SECRET_KEY_RE = /^[0-9a-f]{64}$/;
export const UUID_RE = /^[0-9a-f]{64}$/;

declare const idBrand: unique symbol;
type Branded<B extends string> = string & { readonly [idBrand]: B };

/** A block's BLAKE3 hash of its stored bytes, 64 lowercase hex digits: the block's name. */
export type BlockHash = Branded<"BlockHash">;
/** A node's id: its ed25519 public key, 64 lowercase hex digits (cluster/node-key.ts). */
export type NodeId = Branded<"NodeId">;
/** An object version's (or multipart part's) uuid, as newUuid makes it. */
export type VersionUuid = Branded<"VersionUuid">;

const HEX64_SOURCE = "^[0-9a-f]{64}$";
/** A node id as a regular expression source (e.g. for the keys of a record keyed by node). */
export const NODE_ID_PATTERN = HEX64_SOURCE;
const HEX64 = new RegExp(HEX64_SOURCE);

/** A malformed identifier, named in the message (what it should have been, and what it was). */
export class IdFormatError extends Error {}

function shown(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : String(value);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function parser<T extends string>(what: string): (value: unknown) => T {
  return (value) => {
    if (typeof value !== "string" || !HEX64.test(value)) throw new IdFormatError(`${what} is 64 lowercase hex digits, got ${shown(value)}`);
    return value as T;
  };
}

export const isBlockHash = (value: unknown): value is BlockHash => typeof value === "string" && HEX64.test(value);
export const isNodeId = (value: unknown): value is NodeId => typeof value === "string" && HEX64.test(value);
export const isVersionUuid = (value: unknown): value is VersionUuid => typeof value === "string" && HEX64.test(value);

export const parseBlockHash: (value: unknown) => BlockHash = parser("a block hash");
export const parseNodeId: (value: unknown) => NodeId = parser("a node id");
export const parseVersionUuid: (value: unknown) => VersionUuid = parser("a version uuid");

// TypeBox schemas of the branded ids, for message and entry schemas: a checked value is typed
// with its brand.
export const BlockHashSchema: TUnsafe<BlockHash> = Type.Unsafe<BlockHash>(Type.String({ pattern: HEX64_SOURCE }));
export const NodeIdSchema: TUnsafe<NodeId> = Type.Unsafe<NodeId>(Type.String({ pattern: HEX64_SOURCE }));
export const VersionUuidSchema: TUnsafe<VersionUuid> = Type.Unsafe<VersionUuid>(Type.String({ pattern: HEX64_SOURCE }));
