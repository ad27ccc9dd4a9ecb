// Named bounds shared by several layers. Layer-specific limits live next to their code.

/**
 * Bodies below this size are stored inline in the object entry (Garage: 3072; MinIO: 128 KiB).
 * A block of its own costs a file: on this machine's ext4 an inode and often a directory, about
 * 1 ms of kernel time, where the inline entry's extra sqlite pages cost about 0.1 ms. Around
 * 8 KiB the bytes written come out even (base64 in the WAL and again at checkpoint, against the
 * file's data, inode and directory blocks); above it, listing would also parse ever more data.
 */
export const INLINE_THRESHOLD = 8192;
/** Largest single PUT / UploadPart body, as S3 (5 GiB). */
export const MAX_PUT_SIZE = 5 * 1024 ** 3;
/** Room for aws-chunked framing on top of MAX_PUT_SIZE when sizing the HTTP body limit. */
export const MAX_HTTP_BODY = MAX_PUT_SIZE + 64 * 1024 ** 2;
/** S3 object keys are at most 1024 bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;
/** Most entries a list page may return (S3 clamps max-keys to 1000). */
export const MAX_LIST_KEYS = 1000;
/** Multipart: part numbers and part count, as S3. */
export const MAX_PART_NUMBER = 10000;
/** Largest total size of user metadata headers (S3: 2 KiB). */
export const MAX_USER_METADATA_BYTES = 2048;
/** Blocks of one request in flight between hashing and disk (bounds RAM per request). */
export const BLOCKS_IN_FLIGHT_PER_REQUEST = 8;
