// How long data that a newer write made unreachable stays readable. A GET resolves the visible
// version first and reads its block list and blocks afterwards, page by page, for as long as
// the body takes to send; a concurrent overwrite or delete must not pull those rows from under
// it (s3-tests' test_atomic_read_*). Cascades that release such rows wait this long (Garage
// keeps blocks for its 10-minute block GC delay for the same reason).
import { envMilliseconds } from "../util/env";

/** Default grace: as long as the block GC delay, so a read never finds rows without blocks. */
export const READ_GRACE_MS = 10 * 60 * 1000;
/** Overrides READ_GRACE_MS, in milliseconds (tests cannot wait ten minutes). */
export const READ_GRACE_ENV = "BUNKER_READ_GRACE_MS";

/** The configured grace: READ_GRACE_ENV if set, else READ_GRACE_MS. */
export function readGraceMs(): number {
  return envMilliseconds(READ_GRACE_ENV, READ_GRACE_MS);
}
