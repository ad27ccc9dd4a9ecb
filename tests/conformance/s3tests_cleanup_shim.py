# pytest plugin loaded by tests/conformance/s3-tests.ts (-p s3tests_cleanup_shim).
#
# s3-tests cleans up before and after EVERY test by listing each leftover bucket with
# ListObjectVersions (s3tests.functional.list_versions, used only by nuke_bucket). Bunker has no
# versioning and answers that operation 501 NotImplemented, so without this shim every test would
# error in its setup or teardown and the run would measure nothing. When, and only when, the
# cleanup listing answers NotImplemented, this lists the bucket with ListObjectsV2 instead (on a
# bucket without versioning that is the same set of objects). Test bodies are untouched: a test
# that calls ListObjectVersions itself still fails. Each fallback is recorded in the file named by
# S3TESTS_SHIM_LOG, so the runner can say the shim was needed.
import os

from botocore.exceptions import ClientError


def _record(bucket):
    path = os.environ.get("S3TESTS_SHIM_LOG")
    if path:
        with open(path, "a") as f:
            f.write(bucket + "\n")


def pytest_configure(config):
    import s3tests.functional as functional

    original = functional.list_versions

    def list_versions(client, bucket, batch_size):
        try:
            yield from original(client, bucket, batch_size)
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NotImplemented":
                raise
        _record(bucket)
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": batch_size}
        )
        for page in pages:
            objs = page.get("Contents", [])
            if objs:
                yield [{"Key": o["Key"]} for o in objs]

    functional.list_versions = list_versions
