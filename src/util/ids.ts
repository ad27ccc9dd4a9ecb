// Random identifiers: 32-byte uuids (64 hex, as Garage), access key ids and secrets.
import { randomBytes } from "node:crypto";

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
