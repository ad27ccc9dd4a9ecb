// Node identity: an ed25519 key pair kept in metadata_dir; the node id is the public key in hex.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makePrivateDir, PRIVATE_FILE_MODE } from "../util/private-files";

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
  makePrivateDir(metadataDir);
  const privPath = join(metadataDir, PRIVATE_FILE);
  let privateKey: KeyObject;
  if (existsSync(privPath)) {
    privateKey = createPrivateKey({ key: readFileSync(privPath), format: "der", type: "pkcs8" });
  } else {
    privateKey = generateKeyPairSync("ed25519").privateKey;
    writeFileSync(privPath, privateKey.export({ format: "der", type: "pkcs8" }), { mode: PRIVATE_FILE_MODE });
    chmodSync(privPath, PRIVATE_FILE_MODE);
  }
  const publicKey = createPublicKey(privateKey);
  const id = rawPublicKeyHex(publicKey);
  // Not secret, but every file in metadata_dir is the owner's only: one rule to check.
  writeFileSync(join(metadataDir, PUBLIC_FILE), id + "\n", { mode: PRIVATE_FILE_MODE });
  return { id, privateKey, publicKey };
}
