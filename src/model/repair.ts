// Start-up repair: uploads this node was receiving when it stopped can never finish, so
// their versions are aborted and their blocks released.
import { logger } from "../util/log";
import type { Model } from "./model";
import type { ObjectEntry } from "./object";

const log = logger("repair");

/** Aborts the non-multipart uploads this node started before `bootTime`. Returns how many. */
export async function abortInterruptedUploads(model: Model, bootTime: number): Promise<number> {
  const rows = model.db
    .query(`SELECT v FROM t_object WHERE v LIKE '%"kind":"uploading","multipart":false%'`)
    .all() as { v: string }[];
  let aborted = 0;
  for (const row of rows) {
    const o = JSON.parse(row.v) as ObjectEntry;
    const stale = o.versions.filter(
      (v) => v.state.kind === "uploading" && !v.state.multipart && v.state.uploader === model.placement.selfId && v.timestamp < bootTime,
    );
    if (stale.length === 0) continue;
    await model.objects.insert({ ...o, versions: stale.map((v) => ({ ...v, state: { kind: "aborted" as const } })) });
    aborted += stale.length;
  }
  if (aborted > 0) log.info(`aborted ${aborted} uploads interrupted by the last stop`);
  return aborted;
}
