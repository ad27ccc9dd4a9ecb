// The connection handshake: mutual authentication and session keys, after Secure Scuttlebutt's
// secret handshake (what Garage uses), rebuilt from node:crypto primitives.
//
//   K = network key (rpc_secret, 32 bytes); a/A, b/B = dialer/listener ephemeral X25519 keys;
//   c/C, s/S = dialer/listener ed25519 node keys (node id = hex of the raw public key);
//   Hd, Hl = dialer/listener hello header: "bunker" | protocol version (u16), in clear.
//   1. D->L  Hd | A | HMAC(K, "hello" | Hd | A)        72 B: proves D holds K, nothing else
//   2. L->D  Hl | B | HMAC(K, "welcome" | A | B)       72 B: proves L holds K, bound to this A
//      shared = X25519(a, B) = X25519(b, A); th2 = SHA-256(msg1 | msg2)
//      k3 | k4 = HKDF-SHA256(ikm shared, salt K, info "handshake" | th2)
//   3. D->L  AES-GCM_k3( C | S_expected | sig_c("dialer" | th2 | C | S_expected) )
//   4. L->D  AES-GCM_k4( S | sig_s("listener" | th2 | C | S | sig_c) )
//      th4 = SHA-256(msg1..msg4); keys D->L | L->D = HKDF(shared, K, "session" | th4)
//   5. D->L  the first session record, a fixed confirmation plaintext.
// A node without K fails at message 1 (or 2) and learns only random-looking bytes. Node keys
// are proven by signatures over the transcript, so nothing can be replayed into another
// session; identities travel encrypted. The dialer names the node it expects (S_expected):
// the listener refuses a dialer that wants someone else, and the dialer checks S.
// The listener admits the dialer only on message 5, i.e. after the dialer has accepted the
// listener, so neither side is ever half-admitted. Ephemeral keys give forward secrecy.
//
// Protocol versions: each side reads the other's header before any MAC, so nodes of two
// incompatible releases (during a rolling upgrade) refuse each other with a "version" failure
// naming both versions, not as a wrong key. A listener that sees another version answers with
// its own header only, then closes, so the dialer learns the version too. Version 1 had no
// header: a listener recognises its hello by the version-1 MAC (it holds K) and says so.
// Every label is prefixed with "bunker-rpc/<version>", so versions never share a MAC or a key.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  sign,
  timingSafeEqual,
  verify,
  type KeyObject,
} from "node:crypto";
import { assert } from "../util/assert.ts";
import { isNodeId, type NodeId } from "../util/ids.ts";
import {
  BoxOpener,
  BoxSealer,
  RECORD_HEADER_BYTES,
  RECORD_TAG_BYTES,
  RecordError,
  SESSION_KEY_BYTES,
} from "./box-stream.ts";

/** A handshake that has not finished after this long is abandoned and the socket closed. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
export const NETWORK_KEY_BYTES = 32;
export const NODE_ID_BYTES = 32;

/**
 * The RPC protocol this release speaks; nodes refuse a peer of another version at the
 * handshake. Bump it whenever a message, an endpoint or a stored entry changes incompatibly.
 *   1: first release (no version header).
 *   2: version header; endpoint schemas checked; new object version state and endpoints.
 *   3: anti-entropy digests are XORs of hashes of the binary rows (src/db/table-rows.ts), not
 *      hashes of JSON: a node of version 2 would see every partition differ on every pass.
 *   4: anti-entropy exchanges the row hashes (and row ids) of differing sync buckets, then only
 *      the entries that differ, pulled by row id (table/bucket-row-hashes, table/bucket-pull);
 *      table/bucket-entries is gone.
 */
export const PROTOCOL_VERSION = 4;
/** The release before the hello header: recognised by its MAC, refused as a version mismatch. */
const LEGACY_PROTOCOL_VERSION = 1;
const HEADER_MAGIC = Buffer.from("bunker");
const HEADER_BYTES = HEADER_MAGIC.length + 2;
const X25519_BYTES = 32;
const MAC_BYTES = 32;
const SIGNATURE_BYTES = 64;
const AEAD_TAG_BYTES = 16;
/** Message 1 or 2 after its header, and a version-1 message 1 (which had no header). */
const HELLO_BODY_BYTES = X25519_BYTES + MAC_BYTES;
const MSG3_BYTES = NODE_ID_BYTES + NODE_ID_BYTES + SIGNATURE_BYTES + AEAD_TAG_BYTES;
const MSG4_BYTES = NODE_ID_BYTES + SIGNATURE_BYTES + AEAD_TAG_BYTES;
const confirmation = (version: number) => new TextEncoder().encode(`bunker-rpc/${version} ready`);
// SPKI DER prefixes of raw 32-byte keys (RFC 8410).
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

export type HandshakeFailure = "network-key" | "node-id" | "signature" | "protocol" | "version";

export class HandshakeError extends Error {
  constructor(
    message: string,
    readonly reason: HandshakeFailure,
  ) {
    super(message);
    this.name = "HandshakeError";
  }
}

export interface HandshakeIo {
  read(n: number): Promise<Uint8Array>;
  write(bytes: Uint8Array): Promise<void>;
}

export interface NodeIdentity {
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface HandshakeResult {
  peerId: NodeId;
  sealer: BoxSealer;
  opener: BoxOpener;
}

export function rawEd25519PublicKey(key: KeyObject): Buffer {
  const der = key.export({ format: "der", type: "spki" });
  assert(der.length === ED25519_SPKI_PREFIX.length + NODE_ID_BYTES, "ed25519 SPKI is 44 bytes");
  return der.subarray(der.length - NODE_ID_BYTES);
}

/** True when `id` is the node id (hex raw public key) of `identity`'s key pair. */
export function identityIsConsistent(identity: NodeIdentity): boolean {
  return rawEd25519PublicKey(identity.publicKey).toString("hex") === identity.id;
}

export { isNodeId };

function importEd25519(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

function rawX25519(key: KeyObject): Buffer {
  const der = key.export({ format: "der", type: "spki" });
  return der.subarray(der.length - X25519_BYTES);
}

function importX25519(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

/** A label of `version`: mixed into every MAC, signature and key derivation. */
const labelOf = (version: number, what: string) => Buffer.from(`bunker-rpc/${version} ${what}`);

function header(version: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  HEADER_MAGIC.copy(h);
  h.writeUInt16BE(version, HEADER_MAGIC.length);
  return h;
}

/** The version a header announces, or undefined when it is no Bunker header. */
function versionOf(h: Uint8Array): number | undefined {
  if (!sameBytes(h.subarray(0, HEADER_MAGIC.length), HEADER_MAGIC)) return undefined;
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).readUInt16BE(HEADER_MAGIC.length);
}

function versionMismatch(peerVersion: number, ownVersion: number): HandshakeError {
  return new HandshakeError(
    `peer speaks RPC protocol version ${peerVersion}, this node speaks version ${ownVersion} (run the same Bunker release on both)`,
    "version",
  );
}

function mac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return h.digest();
}

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
}

function hkdf(shared: Uint8Array, networkKey: Uint8Array, info: Uint8Array): [Buffer, Buffer] {
  const okm = Buffer.from(hkdfSync("sha256", shared, networkKey, info, 2 * SESSION_KEY_BYTES));
  return [okm.subarray(0, SESSION_KEY_BYTES), okm.subarray(SESSION_KEY_BYTES)];
}

// Each handshake key encrypts exactly one message, so a fixed zero nonce is safe.
const ZERO_NONCE = Buffer.alloc(12);

function aeadSeal(key: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = createCipheriv("aes-256-gcm", key, ZERO_NONCE, { authTagLength: AEAD_TAG_BYTES });
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([body, c.getAuthTag()]);
}

function aeadOpen(key: Uint8Array, sealed: Uint8Array, what: string): Buffer {
  const d = createDecipheriv("aes-256-gcm", key, ZERO_NONCE, { authTagLength: AEAD_TAG_BYTES });
  d.setAuthTag(sealed.subarray(sealed.length - AEAD_TAG_BYTES));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - AEAD_TAG_BYTES)), d.final()]);
  } catch {
    throw new HandshakeError(`${what} failed authentication`, "protocol");
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function x25519(privateKey: KeyObject, peerRaw: Uint8Array): Buffer {
  try {
    return diffieHellman({ privateKey, publicKey: importX25519(peerRaw) });
  } catch {
    // A low-order point gives an all-zero secret, which BoringSSL refuses.
    throw new HandshakeError("invalid ephemeral key", "protocol");
  }
}

function checkInputs(networkKey: Uint8Array, self: NodeIdentity): Buffer {
  assert(networkKey.length === NETWORK_KEY_BYTES, "network key is 32 bytes");
  const raw = rawEd25519PublicKey(self.publicKey);
  assert(raw.toString("hex") === self.id, "node id is the hex of the node's public key");
  return raw;
}

const WRONG_KEY = "wrong rpc_secret (network key)";

/**
 * Runs the dialer's side. `expectedPeerId` is the node id we mean to reach; `version` is
 * PROTOCOL_VERSION except in tests that play another release.
 */
export async function dialerHandshake(
  io: HandshakeIo,
  networkKey: Uint8Array,
  self: NodeIdentity,
  expectedPeerId: string,
  version: number = PROTOCOL_VERSION,
): Promise<HandshakeResult> {
  const selfRaw = checkInputs(networkKey, self);
  assert(isNodeId(expectedPeerId), "expected peer id is 64 hex digits");
  const expectedRaw = Buffer.from(expectedPeerId, "hex");
  const label = (what: string) => labelOf(version, what);

  const eph = generateKeyPairSync("x25519");
  const a = rawX25519(eph.publicKey);
  const hd = header(version);
  const msg1 = Buffer.concat([hd, a, mac(networkKey, label("hello"), hd, a)]);
  await io.write(msg1);

  const hl = await io.read(HEADER_BYTES);
  const peerVersion = versionOf(hl);
  if (peerVersion === undefined) throw new HandshakeError("the peer did not answer with a Bunker RPC handshake", "protocol");
  if (peerVersion !== version) throw versionMismatch(peerVersion, version);
  const msg2 = Buffer.concat([hl, await io.read(HELLO_BODY_BYTES)]);
  const b = msg2.subarray(HEADER_BYTES, HEADER_BYTES + X25519_BYTES);
  if (!sameBytes(msg2.subarray(HEADER_BYTES + X25519_BYTES), mac(networkKey, label("welcome"), a, b))) {
    throw new HandshakeError(WRONG_KEY, "network-key");
  }
  const shared = x25519(eph.privateKey, b);
  const th2 = sha256(msg1, msg2);
  const [k3, k4] = hkdf(shared, networkKey, Buffer.concat([label("handshake"), th2]));

  const sigC = sign(null, Buffer.concat([label("dialer"), th2, selfRaw, expectedRaw]), self.privateKey);
  const msg3 = aeadSeal(k3, Buffer.concat([selfRaw, expectedRaw, sigC]));
  assert(msg3.length === MSG3_BYTES, "message 3 size");
  await io.write(msg3);

  const msg4 = await io.read(MSG4_BYTES);
  const pt4 = aeadOpen(k4, msg4, "handshake message 4");
  const serverRaw = pt4.subarray(0, NODE_ID_BYTES);
  const sigS = pt4.subarray(NODE_ID_BYTES);
  if (!sameBytes(serverRaw, expectedRaw)) {
    throw new HandshakeError(
      `peer is node ${serverRaw.toString("hex")}, expected ${expectedPeerId}`,
      "node-id",
    );
  }
  const signedByS = Buffer.concat([label("listener"), th2, selfRaw, serverRaw, sigC]);
  if (!verify(null, signedByS, importEd25519(serverRaw), sigS)) {
    throw new HandshakeError("peer's node-key signature is invalid", "signature");
  }

  const th4 = sha256(msg1, msg2, msg3, msg4);
  const [toListener, toDialer] = hkdf(shared, networkKey, Buffer.concat([label("session"), th4]));
  const sealer = new BoxSealer(toListener);
  const opener = new BoxOpener(toDialer);
  const confirm = confirmation(version);
  await io.write(sealer.seal([confirm], confirm.length));
  return { peerId: expectedPeerId, sealer, opener };
}

/** Runs the listener's side; resolves with the authenticated dialer's node id. */
export async function listenerHandshake(
  io: HandshakeIo,
  networkKey: Uint8Array,
  self: NodeIdentity,
  version: number = PROTOCOL_VERSION,
): Promise<HandshakeResult> {
  const selfRaw = checkInputs(networkKey, self);
  const label = (what: string) => labelOf(version, what);

  const hd = await io.read(HEADER_BYTES);
  const peerVersion = versionOf(hd);
  if (peerVersion === undefined) {
    // No header: a version-1 dialer (its hello has that version's MAC), or garbage.
    const legacy = Buffer.concat([hd, await io.read(HELLO_BODY_BYTES - HEADER_BYTES)]);
    const a = legacy.subarray(0, X25519_BYTES);
    if (sameBytes(legacy.subarray(X25519_BYTES), mac(networkKey, labelOf(LEGACY_PROTOCOL_VERSION, "hello"), a))) {
      throw versionMismatch(LEGACY_PROTOCOL_VERSION, version);
    }
    throw new HandshakeError(WRONG_KEY, "network-key");
  }
  if (peerVersion !== version) {
    // Our header only (no key material): the dialer learns our version, and nothing else.
    await io.write(header(version));
    throw versionMismatch(peerVersion, version);
  }
  const body1 = await io.read(HELLO_BODY_BYTES);
  const msg1 = Buffer.concat([hd, body1]);
  const a = body1.subarray(0, X25519_BYTES);
  if (!sameBytes(body1.subarray(X25519_BYTES), mac(networkKey, label("hello"), hd, a))) {
    throw new HandshakeError(WRONG_KEY, "network-key");
  }
  const eph = generateKeyPairSync("x25519");
  const b = rawX25519(eph.publicKey);
  const hl = header(version);
  const msg2 = Buffer.concat([hl, b, mac(networkKey, label("welcome"), a, b)]);
  await io.write(msg2);
  const shared = x25519(eph.privateKey, a);
  const th2 = sha256(msg1, msg2);
  const [k3, k4] = hkdf(shared, networkKey, Buffer.concat([label("handshake"), th2]));

  const msg3 = await io.read(MSG3_BYTES);
  const pt3 = aeadOpen(k3, msg3, "handshake message 3");
  const clientRaw = pt3.subarray(0, NODE_ID_BYTES);
  const expectedRaw = pt3.subarray(NODE_ID_BYTES, 2 * NODE_ID_BYTES);
  const sigC = pt3.subarray(2 * NODE_ID_BYTES);
  if (!sameBytes(expectedRaw, selfRaw)) {
    throw new HandshakeError(`dialer expects node ${expectedRaw.toString("hex")}, this is ${self.id}`, "node-id");
  }
  if (sameBytes(clientRaw, selfRaw)) {
    throw new HandshakeError("dialer presents this node's own id", "node-id");
  }
  const signedByC = Buffer.concat([label("dialer"), th2, clientRaw, expectedRaw]);
  if (!verify(null, signedByC, importEd25519(clientRaw), sigC)) {
    throw new HandshakeError("dialer's node-key signature is invalid", "signature");
  }
  const sigS = sign(null, Buffer.concat([label("listener"), th2, clientRaw, selfRaw, sigC]), self.privateKey);
  const msg4 = aeadSeal(k4, Buffer.concat([selfRaw, sigS]));
  assert(msg4.length === MSG4_BYTES, "message 4 size");
  await io.write(msg4);

  const th4 = sha256(msg1, msg2, msg3, msg4);
  const [toListener, toDialer] = hkdf(shared, networkKey, Buffer.concat([label("session"), th4]));
  const sealer = new BoxSealer(toDialer);
  const opener = new BoxOpener(toListener);
  const expected = confirmation(version);
  let confirm: Uint8Array[];
  try {
    confirm = opener.push(await io.read(RECORD_HEADER_BYTES + expected.length + RECORD_TAG_BYTES));
  } catch (err) {
    if (!(err instanceof RecordError)) throw err;
    throw new HandshakeError("confirmation record failed authentication", "protocol");
  }
  if (confirm.length !== 1 || !sameBytes(confirm[0]!, expected) || opener.pending !== 0) {
    throw new HandshakeError("bad confirmation record", "protocol");
  }
  return { peerId: clientRaw.toString("hex") as NodeId, sealer, opener };
}
