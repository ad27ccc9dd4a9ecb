// The category of each test of Ceph's s3-tests (test_s3.py, test_headers.py) and whether it is in
// Garage's feature scope, which is what Bunker's conformance goal (95% of in-scope tests pass) is
// measured against. Kept as data so the line between "in scope" and "out of scope by design" can
// be reviewed in one place. A test matches the FIRST rule whose pattern matches its name (the
// parameters of a parametrized test, e.g. `test_copy_enc[sse-c-sse-c-...]`, are part of the name).
// A test that no rule matches is counted in scope ("uncategorized"), so a new upstream test is
// never silently excluded.
//
// Out of scope are the features Garage does not have and Bunker refuses by design (501): versioning,
// object lock, bucket policies and public-access blocks, ACLs that grant access to anyone but the
// key's own grants (public-read, public-read-write, authenticated-read, explicit grants, ownership
// controls), server-side encryption with server-held keys (SSE-S3, SSE-KMS, default bucket
// encryption), storage-class transitions, torrents and RGW's own multi-tenancy. Tests that need
// one of these only to set up another feature are out of scope too: Bunker refuses the setup
// request, so the test cannot tell anything about the feature it is named after. So are the few
// tests that no server can pass ("suite-defect": they edit a header before botocore signs).
// The suite is run with the markers AWS-compatible servers use (see MARKER_EXPRESSION): tests
// marked fails_on_aws, and RGW-internal lifecycle timing, cloud tiering and bucket logging, are
// not run at all.

export interface Category {
  name: string;
  inScope: boolean;
  why: string;
  pattern: RegExp;
}

/** pytest -m expression: what AWS-compatible servers run (RGW-internal suites left out). */
export const MARKER_EXPRESSION = [
  "fails_on_aws", // tests of RGW behaviour that AWS itself does not have
  "lifecycle_expiration", // wait for RGW's lc_debug_interval accelerated expiration
  "lifecycle_transition", // RGW storage-class transitions
  "cloud_transition",
  "cloud_restore",
  "bucket_logging", // RGW's bucket logging (journal mode, flush API)
  "bucket_logging_cleanup",
  "fails_without_logging_rollover",
  "target_by_bucket", // RGW cloud-tier targets
]
  .map((m) => `not ${m}`)
  .join(" and ");

/** The test files of the suite that are run. */
export const TEST_FILES = ["s3tests/functional/test_s3.py", "s3tests/functional/test_headers.py"];

const names = (...list: string[]) => new RegExp(`^(?:${list.join("|")})$`);

export const CATEGORIES: Category[] = [
  {
    name: "suite-defect",
    inScope: false,
    why: "the test drops or blanks a header in a before-call hook, but botocore signs and sets Content-Length after that hook, so the request arrives valid; no server can pass (upstream marks them fails_on_rgw with a TODO)",
    pattern: names(
      "test_object_create_bad_authorization_empty",
      "test_object_create_bad_authorization_none",
      "test_bucket_create_bad_authorization_empty",
      "test_bucket_create_bad_authorization_none",
      "test_object_create_bad_contentlength_none",
      // The same with SigV2: the Authorization or Date header set in the hook is overwritten by
      // the signer (upstream: fails_on_rgw, "once we have learned how to manipulate the
      // authorization header").
      "test_object_create_bad_authorization_incorrect_aws2",
      "test_object_create_bad_authorization_invalid_aws2",
      "test_object_create_bad_date_none_aws2",
      "test_bucket_create_bad_authorization_invalid_aws2",
      "test_bucket_create_bad_date_none_aws2",
    ),
  },
  // ---- out of scope by design ----
  {
    name: "rgw-tenant",
    inScope: false,
    why: "RGW multi-tenancy (tenant-qualified bucket names); no S3 equivalent",
    pattern: /_tenant(?:_|$)|_different_tenant$|_tenanted_/,
  },
  {
    name: "versioning",
    inScope: false,
    why: "bucket versioning is not implemented (Garage neither); these tests enable it or list versions",
    pattern: new RegExp(
      [
        "versioning",
        "(?<!non)versioned",
        "^test_delete_marker_(?:versioned|suspended)$",
        "^test_object_put_acl_mtime$", // checks ListObjectVersions
        "^test_lifecycle_set_(?:noncurrent|deletemarker)$", // rules that only exist with versioning
        // conditional writes whose test enables versioning first and expects a delete marker
        "^test_(?:multipart_)?put_current_object_if_(?:none_)?match$",
        "^test_put_object_current_if_match$",
      ].join("|"),
    ),
  },
  {
    name: "object-lock",
    inScope: false,
    why: "object lock (retention, legal hold) needs versioning; refused 501",
    pattern: /^test_object_lock_/,
  },
  {
    name: "bucket-policy",
    inScope: false,
    why: "bucket policies and public-access blocks are not implemented (Garage has per-key grants instead)",
    pattern: new RegExp(
      [
        "bucketv?2?_policy",
        "policy_status",
        "_with_(?:bucket_)?policy",
        "_policy_prefix$",
        "public_block",
        "block_public",
        "ignore_public_acls",
        // tag tests whose access for the other user comes from a bucket policy
        "^test_(?:get|put)_tags_acl_public$",
        "^test_delete_tags_obj_public$",
      ].join("|"),
    ),
  },
  {
    name: "object-ownership",
    inScope: false,
    why: "ownership controls choose between ACL modes; Bunker is always BucketOwnerEnforced and has no PutBucketOwnershipControls",
    pattern: /ownership|^test_create_bucket_(?:bucket_owner_enforced|bucket_owner_preferred|object_writer)$/,
  },
  {
    name: "sse-kms",
    inScope: false,
    why: "SSE-KMS needs a key management service; refused 501",
    pattern: /kms/,
  },
  {
    name: "sse-s3",
    inScope: false,
    why: "SSE-S3 and default bucket encryption (server-held keys) are not implemented (Garage neither); refused 501",
    pattern: /sse_s3|sse-s3|bucket_encryption|^test_put_obj_enc_conflict_/,
  },
  {
    name: "acl-public",
    inScope: false,
    why: "ACLs granting access beyond the key's own grants (public-read, public-read-write, authenticated-read, grants to users/groups), used by the test itself or by its setup; refused 501",
    pattern: new RegExp(
      [
        "^test_(?:bucket|object)_acl_canned(?!_private_to_private$)",
        "acl_grant",
        "^test_bucket_acl_revoke_all$",
        "^test_object_acl_full_control_verify_attributes$",
        "^test_access_bucket_(?!private_objectv?2?_private$)",
        "^test_object_acl_create_contentlength_none$",
        "^test_bucket_listv?2?_objects_anonymous$",
        "^test_object_anon_put_write_access$",
        "^test_list_multipart_upload_owner$",
        "^test_object_copy_not_owned_object_bucket$",
        "^test_object_copy_canned_acl$",
        "^test_bucket_concurrent_set_canned_acl$",
        "^test_bucket_recreate_(?:overwrite|new)_acl$",
        "^test_expected_bucket_owner$",
        "^test_object_raw_(?:get|authenticated)",
        "^test_object_delete_key_bucket_gone$",
        "^test_100_continue$",
        // CORS tests make the bucket public-read and send anonymous requests
        "^test_cors_(?:origin_response|origin_wildcard|header_option|presigned_)",
        // anonymous POST into a public-read-write bucket
        "^test_post_object_(?:anonymous_request|authenticated_no_content_type|authenticated_request_bad_access_key|set_success_code|set_invalid_success_code|success_redirect_action|tags_anonymous_request)$",
      ].join("|"),
    ),
  },
  {
    name: "storage-class",
    inScope: false,
    why: "storage-class transitions; Bunker stores every object one way (STANDARD)",
    pattern: /^test_lifecycle_transition_/,
  },
  {
    name: "torrent",
    inScope: false,
    why: "GetObjectTorrent is not implemented (Garage neither)",
    pattern: /torrent/,
  },

  // ---- in scope ----
  { name: "sigv2", inScope: true, why: "signature v2 headers (test_headers *_aws2)", pattern: /_aws2$/ },
  {
    name: "sse-c",
    inScope: true,
    why: "SSE-C (customer-provided keys)",
    pattern: /sse_c|sse-c-sse-c|encrypted_transfer|encryption_key_no_sse_c/,
  },
  { name: "checksum", inScope: true, why: "x-amz-checksum-*", pattern: /checksum|cksum/ },
  { name: "object-attributes", inScope: true, why: "GetObjectAttributes", pattern: /object_attributes/ },
  { name: "tagging", inScope: true, why: "object and bucket tagging", pattern: /tagging|_tags?(?:_|$)/ },
  { name: "post-object", inScope: true, why: "browser-form POST uploads", pattern: /^test_post_object/ },
  { name: "lifecycle", inScope: true, why: "lifecycle configuration (not its timing)", pattern: /^test_lifecycle/ },
  { name: "cors", inScope: true, why: "bucket CORS configuration", pattern: /cors/ },
  {
    name: "conditional",
    inScope: true,
    why: "If-Match / If-None-Match / If-(Un)Modified-Since on reads, writes and copies",
    pattern: /if_?(?:none_?)?match|ifmodifiedsince|ifunmodifiedsince/,
  },
  {
    name: "copy",
    inScope: true,
    why: "CopyObject, UploadPartCopy",
    pattern: /^test_object_copy|^test_copy_|part_copy|^test_multipart_copy/,
  },
  { name: "multipart", inScope: true, why: "multipart uploads", pattern: /multipart|^test_atomic_multipart/ },
  { name: "range", inScope: true, why: "Range reads", pattern: /^test_ranged_/ },
  {
    name: "listing",
    inScope: true,
    why: "ListObjects v1/v2",
    pattern: /^test_bucket_listv?2?_|^test_basic_key_count$/,
  },
  {
    name: "acl-private",
    inScope: true,
    why: "ACL answers for what Bunker does (owner FULL_CONTROL, canned private) and other keys refused",
    pattern: names(
      "test_bucket_acl_default",
      "test_object_acl_default",
      "test_bucket_acl_canned_private_to_private",
      "test_object_presigned_put_object_with_acl",
      "test_access_bucket_private_object_private",
      "test_access_bucket_private_objectv2_private",
    ),
  },
  {
    name: "bucket",
    inScope: true,
    why: "CreateBucket (names, conflicts), DeleteBucket, HeadBucket, GetBucketLocation, ListBuckets",
    pattern: /^test_bucketv?2?_(?:create|delete|head|notexist|get_location|recreate)|^test_buckets_|^test_list_buckets|^test_bucket_create_special_key_names$/,
  },
  {
    name: "headers",
    inScope: true,
    why: "malformed or missing request headers, SigV4 (test_headers)",
    pattern: /^test_(?:object|bucket)_(?:create|acl_create)_(?:bad|date|amz_date|contentlength)|^test_bucket_put_bad_canned_acl$/,
  },
  {
    name: "object",
    inScope: true,
    why: "PutObject, GetObject, HeadObject, DeleteObject(s), metadata, presigned URLs, anonymous refusal",
    pattern: /^test_object_|^test_multi_objectv?2?_delete|^test_atomic_|^test_100_continue_error_retry$|^test_delete_marker_nonversioned$/,
  },
];

export const UNCATEGORIZED: Category = {
  name: "uncategorized",
  inScope: true,
  why: "no rule matches; counted in scope until classified",
  pattern: /^/,
};

export function categorize(testName: string): Category {
  return CATEGORIES.find((c) => c.pattern.test(testName)) ?? UNCATEGORIZED;
}
