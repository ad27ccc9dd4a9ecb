// Bucket quotas (max total size, max objects), checked before a write makes a new version
// visible. Counts are eventually consistent (model/counter.ts), as in Garage: writes racing on
// several nodes can pass a limit by what they add together, and a node that does not hold the
// bucket's partition sees counts published up to 2 s ago. Parts of unfinished uploads are not
// counted (as Garage): a part is refused only once the bucket's objects fill the size quota.
import { visibleVersion } from "../../model/object";
import type { ObjectRequest } from "./context";
import { S3Error } from "./errors";

/**
 * Refuses a write of `size` bytes to the request's key when it would pass a quota; with
 * replacesKey false (a part) the write adds bytes but no object and replaces nothing.
 */
export async function checkQuotas(r: Pick<ObjectRequest, "bucket" | "key" | "services">, size: number, opts: { replacesKey: boolean } = { replacesKey: true }): Promise<void> {
  const q = r.bucket.quotas?.v;
  if (!q || (q.maxSize === null && q.maxObjects === null)) return;
  const { model } = r.services;
  if (!opts.replacesKey) {
    if (q.maxSize === null) return;
    const counts = await model.bucketCounts(r.bucket.id);
    if (counts.bytes + size > q.maxSize)
      throw new S3Error("AccessDenied", `Bucket size quota is reached: this bucket may hold at most ${q.maxSize} bytes; it holds ${counts.bytes}`);
    return;
  }
  const [counts, current] = await Promise.all([model.bucketCounts(r.bucket.id), model.objects.get(r.bucket.id, r.key)]);
  const replaced = visibleVersion(current);
  const replacedSize = replaced?.state.data.meta.size ?? 0;
  if (q.maxObjects !== null && !replaced && counts.objects + 1 > q.maxObjects)
    throw new S3Error("AccessDenied", `Object quota is reached: this bucket may hold at most ${q.maxObjects} objects`);
  if (q.maxSize !== null && size > replacedSize && counts.bytes + size - replacedSize > q.maxSize)
    throw new S3Error(
      "AccessDenied",
      `Bucket size quota is reached: this bucket may hold at most ${q.maxSize} bytes; it holds ${counts.bytes} and this write would add ${size - replacedSize}`,
    );
}

/**
 * The body of a write whose length was not declared (HTTP-chunked), cut off with the quota's
 * error as soon as it passes the bytes the bucket's size quota leaves, rather than stored whole
 * and refused after.
 */
export async function* withinSizeQuota(r: Pick<ObjectRequest, "bucket" | "key" | "services">, chunks: AsyncIterable<Uint8Array>, opts: { replacesKey: boolean } = { replacesKey: true }): AsyncGenerator<Uint8Array> {
  const maxSize = r.bucket.quotas?.v?.maxSize ?? null;
  if (maxSize === null) return yield* chunks;
  const { model } = r.services;
  const [counts, current] = await Promise.all([model.bucketCounts(r.bucket.id), opts.replacesKey ? model.objects.get(r.bucket.id, r.key) : undefined]);
  const room = maxSize - counts.bytes + (visibleVersion(current)?.state.data.meta.size ?? 0);
  let seen = 0;
  for await (const chunk of chunks) {
    seen += chunk.length;
    if (seen > room) throw new S3Error("AccessDenied", `Bucket size quota is reached: this bucket may hold at most ${maxSize} bytes; it holds ${counts.bytes}`);
    yield chunk;
  }
}
