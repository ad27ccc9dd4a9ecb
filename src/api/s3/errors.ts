// S3 error codes and the S3Error exception every S3 handler throws.
// The router turns an S3Error into the XML error body; anything else becomes InternalError.
import { ModelError } from "../../model/model";
import { QuorumError } from "../../table/quorum";
import { ConditionalConflictError, ConditionalUnavailableError } from "../../model/conditional-write";
import { BlockNotFoundError } from "../../block/manager";
import { IncompleteBlockListError, StaleCompletionError } from "../../model/object-writer";
import { DecryptionError } from "../../block/encryption";
import { logger } from "../../util/log";
import { ClientDisconnected, RequestBodyTimeout } from "../http";

const log = logger("s3");

export const S3_ERRORS = {
  AccessDenied: 403,
  AccessForbidden: 403,
  AccessControlListNotSupported: 400,
  BadRequest: 400,
  AuthorizationHeaderMalformed: 400,
  BadDigest: 400,
  BucketAlreadyExists: 409,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  ExpiredToken: 400,
  IllegalLocationConstraintException: 400,
  IncompleteBody: 400,
  InternalError: 500,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidBucketAclWithObjectOwnership: 400,
  InvalidBucketName: 400,
  InvalidDigest: 400,
  InvalidEncryptionAlgorithmError: 400,
  InvalidPart: 400,
  InvalidPolicyDocument: 400,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  InvalidTag: 400,
  KeyTooLongError: 400,
  MalformedACLError: 400,
  MalformedXML: 400,
  MalformedPOSTRequest: 400,
  MaxMessageLengthExceeded: 400,
  MetadataTooLarge: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  MissingSecurityHeader: 400,
  NoSuchBucket: 404,
  NoSuchCORSConfiguration: 404,
  NoSuchKey: 404,
  NoSuchLifecycleConfiguration: 404,
  NoSuchTagSet: 404,
  NoSuchUpload: 404,
  NoSuchVersion: 404,
  NoSuchWebsiteConfiguration: 404,
  NotImplemented: 501,
  NotModified: 304,
  PreconditionFailed: 412,
  ConditionalRequestConflict: 409,
  RequestTimeout: 400,
  RequestTimeTooSkewed: 403,
  ServiceUnavailable: 503,
  SignatureDoesNotMatch: 403,
  SlowDown: 503,
  XAmzContentSHA256Mismatch: 400,
  AuthorizationQueryParametersError: 400,
} as const;

export type S3ErrorCode = keyof typeof S3_ERRORS;

export class S3Error extends Error {
  readonly code: S3ErrorCode;
  readonly status: number;
  /** Extra response headers, e.g. Content-Range on InvalidRange. */
  readonly headers: Record<string, string>;

  constructor(code: S3ErrorCode, message?: string, headers: Record<string, string> = {}) {
    super(message ?? code);
    this.code = code;
    this.status = S3_ERRORS[code];
    this.headers = headers;
  }
}

/**
 * What any error means to an S3 client (the S3 and web endpoints answer the same way). An
 * error of no known kind is a bug: it is logged once, with its stack and `context` (the
 * request id and target, when the caller knows them), and answered as InternalError.
 */
export function toS3Error(err: unknown, context?: string): S3Error {
  if (err instanceof S3Error) return err;
  if (err instanceof ModelError) {
    if (err.code === "KeyExists") return new S3Error("InvalidRequest", err.message);
    return new S3Error(err.code, err.message);
  }
  if (err instanceof ClientDisconnected) return new S3Error("IncompleteBody", err.message);
  if (err instanceof RequestBodyTimeout)
    return new S3Error("RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period.");
  if (err instanceof QuorumError) return new S3Error("ServiceUnavailable", `Could not reach enough nodes: ${err.message}`);
  // No reachable node could give the block: it may come back (a node returning, a resync).
  if (err instanceof BlockNotFoundError) return new S3Error("ServiceUnavailable", "The object's data could not be read from any node; please try again.");
  // The key was recognised (its MAC matched), so a block that does not open is damaged:
  // scrub and resync replace it from a replica.
  if (err instanceof DecryptionError) return new S3Error("ServiceUnavailable", "The object's data could not be decrypted on this read; please try again.");
  // A conditional write lost its key to another write made meanwhile: AWS asks for a retry.
  if (err instanceof ConditionalConflictError) return new S3Error("ConditionalRequestConflict", `A conflicting operation occurred: ${err.message}. Please retry.`);
  if (err instanceof ConditionalUnavailableError) return new S3Error("ServiceUnavailable", `The conditional write could not be decided: ${err.message}; it may or may not have taken effect.`);
  if (err instanceof StaleCompletionError) return new S3Error("InvalidRequest", `This ${err.message}: abort it and upload the object again.`);
  if (err instanceof IncompleteBlockListError) return new S3Error("ServiceUnavailable", `The ${err.message}; please try again.`);
  log.error(`${context === undefined ? "" : `${context}: `}internal error: ${(err as Error)?.stack ?? err}`);
  return new S3Error("InternalError", "We encountered an internal error. Please try again.");
}
