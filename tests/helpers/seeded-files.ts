// Reproducible test data: files whose bytes follow from a seed (an AES-256-CTR keystream, fast
// enough for MiBs), trees of such files drawn from a seeded PRNG, and digests of a directory
// tree, so that a client's round trip is compared byte for byte and a failure replays exactly.
import { readdirSync } from "node:fs";
import { createCipheriv, createHash } from "node:crypto";
import { join, relative } from "node:path";
import { hashFile, MiB, writeFileOf, type RandomFile } from "./clients";
import { mulberry32 } from "./random";

const WRITE_CHUNK = 1 * MiB;
const ZEROS = new Uint8Array(WRITE_CHUNK);

/** Writes `size` bytes drawn from `seed` to `path`; the same seed always gives the same bytes. */
export function writeSeededFile(path: string, size: number, seed: number): RandomFile {
  const key = createHash("sha256").update(`bunker-seeded-file:${seed}`).digest();
  const stream = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return writeFileOf(path, size, (n) => stream.update(ZEROS.subarray(0, n)));
}

export interface SeededTreeSpec {
  /** Files of 0 B up to `smallMax` bytes, spread over nested directories. */
  smallFiles: number;
  smallMax: number;
  /** Files of `bigMin` up to `bigMax` bytes. */
  bigFiles: number;
  bigMin: number;
  bigMax: number;
}

/** Writes a tree under `dir` as `spec` says, every choice drawn from `seed`; returns path -> sha256. */
export function writeSeededTree(dir: string, spec: SeededTreeSpec, seed: number): Map<string, string> {
  const rand = mulberry32(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const dirs = ["", "a", "a/b", "a/b/c", "docs", "docs/old", "sp ace", "ünï/日本", "x/y/z/w"];
  const out = new Map<string, string>();
  const add = (name: string, size: number) => {
    const rel = join(dirs[pick(dirs.length)]!, name);
    out.set(rel, writeSeededFile(join(dir, rel), size, pick(2 ** 31)).sha256);
  };
  for (let i = 0; i < spec.smallFiles; i++) add(`s${i}.dat`, pick(spec.smallMax + 1));
  for (let i = 0; i < spec.bigFiles; i++) add(`big-${i}.bin`, spec.bigMin + pick(spec.bigMax - spec.bigMin + 1));
  return out;
}

/** Every regular file under `dir`: path relative to it -> sha256. */
export async function treeDigest(dir: string): Promise<Map<string, string>> {
  const paths: string[] = [];
  const rec = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) rec(p);
      else paths.push(p);
    }
  };
  rec(dir);
  const digests = new Map<string, string>();
  for (const p of paths.sort()) digests.set(relative(dir, p), (await hashFile(p)).sha256);
  return digests;
}
