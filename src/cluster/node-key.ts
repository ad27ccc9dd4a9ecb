// Node identity: an ed25519 key pair kept in metadata_dir; the node id is the public key in hex.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface NodeKey {
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

const PRIVATE_FILE = "node_key";
const PUBLIC_FILE = "node_key.pub";

function rawPublicKeyHex(pub: KeyObject): string {
  // The SPKI DER of an ed25519 key ends with the 32 raw key bytes.
  const der = pub.export({ format: "der", type: "spki" });
  return der.subarray(der.length - 32).toString("hex");
}

export function loadOrCreateNodeKey(metadataDir: string): NodeKey {
  mkdirSync(metadataDir, { recursive: true });
  const privPath = join(metadataDir, PRIVATE_FILE);
  let privateKey: KeyObject;
  if (existsSync(privPath)) {
    privateKey = createPrivateKey({ key: readFileSync(privPath), format: "der", type: "pkcs8" });
  } else {
    privateKey = generateKeyPairSync("ed25519").privateKey;
    writeFileSync(privPath, privateKey.export({ format: "der", type: "pkcs8" }), { mode: 0o600 });
    chmodSync(privPath, 0o600);
  }
  const publicKey = createPublicKey(privateKey);
  const id = rawPublicKeyHex(publicKey);
  writeFileSync(join(metadataDir, PUBLIC_FILE), id + "\n");
  return { id, privateKey, publicKey };
}
