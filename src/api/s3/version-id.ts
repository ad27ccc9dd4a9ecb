// Version ids on a store without versioning: every object has exactly one version, whose id
// is "null" (what AWS reports for objects written while versioning was off). A request naming
// any other version asks for something that does not exist, and must never be served the
// current object instead.
import { S3Error } from "./errors";

/** The only version id an unversioned object has. */
export const NULL_VERSION_ID = "null";
/** What AWS's version ids are made of (URL-safe base64 and '.'), bounded in length. */
const WELL_FORMED = /^[A-Za-z0-9._-]{1,1024}$/;

/**
 * Accepts an absent id and "null"; refuses a malformed id with 400 InvalidArgument and a
 * well-formed one with 404 NoSuchVersion, as AWS does for a version a bucket does not hold.
 */
export function checkVersionId(versionId: string | null | undefined): void {
  if (versionId === null || versionId === undefined || versionId === NULL_VERSION_ID) return;
  if (!WELL_FORMED.test(versionId)) throw new S3Error("InvalidArgument", "Invalid version id specified");
  throw new S3Error("NoSuchVersion", "The specified version does not exist.");
}
