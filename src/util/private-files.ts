// Files only their owner may read: the metadata (every S3 secret key is in it, in clear), the
// node key, the RPC secret, the blocks of users' objects. Owns creating such directories
// (0700) and files (0600), and taking group/other access away from ones that have it.
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync } from "node:fs";
import { join } from "node:path";

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
/** Mode bits of group and others (a secret file with any of them set is refused: Garage's rule). */
export const GROUP_OTHER_BITS = 0o077;

/** Creates `dir`, and its missing parents, readable by the owner only. */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/** Creates an empty file readable by the owner only, unless it exists. */
export function createPrivateFile(path: string): void {
  if (existsSync(path)) return;
  closeSync(openSync(path, "a", PRIVATE_FILE_MODE));
}

export interface ModeChange {
  path: string;
  from: number;
  to: number;
}

function tighten(path: string, changes: ModeChange[]): void {
  const st = lstatSync(path);
  // A symlink's own mode means nothing, and chmod would change what it points to.
  if (st.isSymbolicLink() || (st.mode & GROUP_OTHER_BITS) === 0) return;
  const from = st.mode & 0o7777;
  const to = from & ~GROUP_OTHER_BITS;
  chmodSync(path, to);
  changes.push({ path, from, to });
}

/**
 * Takes group/other access away from `path` and, with `entries`, from what lies directly in
 * it (no deeper: a data_dir's millions of blocks are shut off by their directory's mode).
 * Returns what was changed; a missing path is left alone.
 */
export function tightenModes(path: string, opts: { entries: boolean }): ModeChange[] {
  const changes: ModeChange[] = [];
  if (!existsSync(path)) return changes;
  tighten(path, changes);
  if (opts.entries && lstatSync(path).isDirectory()) for (const name of readdirSync(path)) tighten(join(path, name), changes);
  return changes;
}

/** "path 0644->0600" for a log line. */
export function describeChange(c: ModeChange): string {
  return `${c.path} 0${c.from.toString(8)}->0${c.to.toString(8)}`;
}
