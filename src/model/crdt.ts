// Small CRDT building blocks shared by the model entries.

/** Last-writer-wins register: the higher timestamp wins; ties break on the encoded value. */
export interface Lww<T> {
  ts: number;
  v: T;
}

export function lww<T>(ts: number, v: T): Lww<T> {
  return { ts, v };
}

export function mergeLww<T>(a: Lww<T>, b: Lww<T>): Lww<T> {
  if (a.ts !== b.ts) return a.ts > b.ts ? a : b;
  return JSON.stringify(a.v) >= JSON.stringify(b.v) ? a : b;
}

/** Per-key permissions on a bucket: newer wins; on a tie the more restrictive wins. */
export interface Permissions {
  ts: number;
  read: boolean;
  write: boolean;
  owner: boolean;
}

export function mergePermissions(a: Permissions, b: Permissions): Permissions {
  if (a.ts !== b.ts) return a.ts > b.ts ? a : b;
  return { ts: a.ts, read: a.read && b.read, write: a.write && b.write, owner: a.owner && b.owner };
}

export function mergeRecords<T>(a: Record<string, T>, b: Record<string, T>, mergeValue: (x: T, y: T) => T): Record<string, T> {
  // Keys in sorted order: replicas that merged in different orders must store the same bytes
  // (read repair and anti-entropy compare encodings).
  const out: Record<string, T> = {};
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    const x = a[k];
    const y = b[k];
    out[k] = x !== undefined && y !== undefined ? mergeValue(x, y) : (x ?? y)!;
  }
  return out;
}
