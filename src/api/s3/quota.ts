// Bucket quotas (max total size, max objects), checked before a write makes a new version
// visible. Counts are eventually consistent (model/counter.ts), as in Garage: writes racing
// on several nodes can pass a limit by what they add together, never by more.
import { visibleVersion } from "../../model/object";
import type { ObjectRequest } from "./context";
import { S3Error } from "./errors";

/** Refuses a write of `size` bytes to the request's key when it would pass a quota. */
export async function checkQuotas(r: Pick<ObjectRequest, "bucket" | "key" | "services">, size: number): Promise<void> {
  const q = r.bucket.quotas?.v;
  if (!q || (q.maxSize === null && q.maxObjects === null)) return;
  const { model } = r.services;
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
