"""Ceph's S3 conformance suite (s3-tests) against a node this test starts: the pass count of a fixed,
representative subset must not fall below the figure recorded in docs/storage.md.

The suite is third-party code (ceph/s3-tests, MIT) kept outside this repository, in the project's shared
`conformance/` directory with its runner (`run-s3-tests`). It is found through `POLYFN_S3_TESTS_DIR` (the
`conformance` directory), else `../shared/conformance` beside the repository, else `/work/shared/conformance`;
without it this test skips and says so. The whole suite (572 tests) takes longer than CI's budget allows
(docs/storage.md has the figure and the time), so CI runs SUBSET: some tests of every group the suite has.
The suite's own virtualenv (boto3, gevent, lxml …) is made once under the temp directory and reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, free_port, start_server

pytestmark = pytest.mark.timeout(1500)

#: The subset CI runs: a few tests of each group (objects, listing, multipart, copy, conditions, versioning,
#: tagging, ACLs, CORS, POST uploads, checksums, SSE, Object Lock, auth, errors); none that moves tens of
#: megabytes or writes a thousand objects, so that a loaded machine does not time them out.
SUBSET = (
    "test_bucket_list_empty", "test_bucket_list_distinct", "test_bucket_list_many", "test_bucket_listv2_many",
    "test_bucket_list_delimiter_basic", "test_bucket_listv2_delimiter_prefix", "test_bucket_list_prefix_basic",
    "test_bucket_list_maxkeys_one", "test_bucket_list_marker_empty", "test_bucket_listv2_continuationtoken",
    "test_bucket_list_return_data", "test_bucket_list_objects_anonymous", "test_bucket_listv2_encoding_basic",
    "test_bucket_notexist", "test_bucket_delete_notexist", "test_bucket_delete_nonempty", "test_bucket_create_naming_bad_short_one",
    "test_object_write_to_nonexist_bucket", "test_object_read_not_exist", "test_multi_object_delete",
    "test_object_head_zero_bytes", "test_object_write_check_etag",
    "test_object_write_cache_control", "test_object_write_read_update_read_delete", "test_object_set_get_metadata_none_to_good",
    "test_object_metadata_replaced_on_put", "test_object_write_file", "test_get_object_ifmatch_good",
    "test_get_object_ifmatch_failed", "test_get_object_ifnonematch_good", "test_get_object_ifmodifiedsince_good",
    "test_get_object_ifunmodifiedsince_failed", "test_put_object_if_match", "test_put_object_ifmatch_failed",
    "test_multipart_put_object_if_match", "test_object_raw_get", "test_object_raw_get_bucket_gone",
    "test_object_raw_authenticated", "test_object_raw_response_headers", "test_object_anon_put",
    "test_object_put_authenticated", "test_object_raw_get_x_amz_expires_out_range_zero",
    "test_bucket_head", "test_bucket_head_notexist", "test_bucket_create_exists", "test_bucket_list_objects_anonymous_fail",
    "test_ranged_request_response_code", "test_ranged_request_skip_leading_bytes_response_code",
    "test_ranged_request_empty_object", "test_object_copy_zero_size", "test_object_copy_same_bucket",
    "test_object_copy_to_itself", "test_object_copy_retaining_metadata", "test_object_copy_replacing_metadata",
    "test_object_copy_versioned_bucket", "test_copy_object_ifmatch_good", "test_copy_object_ifnonematch_failed",
    "test_multipart_upload_empty", "test_multipart_upload_small", "test_multipart_copy_small",
    "test_multipart_upload_incorrect_etag", "test_abort_multipart_upload", "test_list_multipart_upload",
    "test_non_multipart_get_part", "test_versioning_bucket_create_suspend",
    "test_versioning_obj_create_read_remove", "test_versioning_obj_plain_null_version_removal",
    "test_versioning_obj_suspend_versions", "test_versioning_multi_object_delete_with_marker",
    "test_versioned_object_acl", "test_delete_marker_nonversioned", "test_get_obj_tagging", "test_put_max_tags",
    "test_put_excess_tags", "test_put_obj_with_tags", "test_get_obj_head_tagging", "test_set_bucket_tagging",
    "test_object_acl_canned_during_create", "test_bucket_acl_canned_publicreadwrite", "test_object_acl_canned",
    "test_access_bucket_publicread_object_private", "test_cors_origin_response", "test_cors_origin_wildcard",
    "test_set_cors", "test_post_object_authenticated_request", "test_post_object_anonymous_request",
    "test_post_object_set_success_code", "test_post_object_upload_size_limit_exceeded",
    "test_post_object_expired_policy", "test_object_checksum_sha256", "test_multipart_use_cksum_helper_crc32",
    "test_encrypted_transfer_1kb", "test_encryption_sse_c_other_key", "test_sse_s3_encrypted_upload_1kb",
    "test_sse_s3_default_upload_1kb", "test_object_lock_put_obj_lock", "test_object_lock_put_obj_retention",
    "test_object_lock_delete_object_with_retention", "test_object_lock_put_legal_hold", "test_atomic_read_1mb",
    "test_atomic_write_1mb", "test_atomic_dual_write_1mb", "test_100_continue",
    # fixed 2026-12-08 (docs/storage.md, "Conformance", kind (a))
    "test_block_public_object_canned_acls", "test_block_public_restrict_public_buckets",
    "test_get_single_multipart_object_attributes", "test_get_sse_c_encrypted_object_attributes",
    "test_sse_s3_default_post_object_authenticated_request",
)
#: Passing tests of SUBSET when it was recorded (2026-12-08: 106 of 108, the two failing are kinds (b) and (c) of
#: docs/storage.md, "Conformance"): the floor CI holds.
RECORDED_SUBSET_PASSED = 106


def suite_dir() -> Path | None:
    candidates = [os.environ.get("POLYFN_S3_TESTS_DIR", ""), str(REPO.parent / "shared" / "conformance"),
                  "/work/shared/conformance"]
    for c in candidates:
        if c and (Path(c) / "run-s3-tests").is_file() and (Path(c) / "s3-tests").is_dir():
            return Path(c)
    return None


def suite_venv(suite: Path) -> Path:
    """The suite's virtualenv, made once per requirements file under the temp directory and reused."""
    reqs = (suite / "s3-tests" / "requirements.txt").read_bytes()
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"polyfn-s3-tests-venv-{hashlib.sha256(reqs).hexdigest()[:12]}"
    if (base / "ready").is_file():
        return base
    work = base.with_name(base.name + f".{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(work)], check=True)
    for _attempt in range(3):  # a registry hiccup must not fail the run
        r = subprocess.run([str(work / "bin" / "pip"), "install", "-q", "-r", str(suite / "s3-tests" /
                                                                               "requirements.txt"), "pytest-timeout"],
                           capture_output=True, text=True, timeout=900)
        if r.returncode == 0:
            break
    else:
        pytest.fail(f"could not install the s3-tests requirements:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    (work / "ready").write_text("ok\n")
    try:
        os.replace(work, base)
    except OSError:  # another run made it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return base


#: A pytest plugin handed to the suite's run: keeps only the tests named in POLYFN_S3_TESTS_ONLY.
_PLUGIN = """
import os

def pytest_collection_modifyitems(config, items):
    only = set(os.environ["POLYFN_S3_TESTS_ONLY"].split(","))
    keep = [i for i in items if i.name in only]
    config.hook.pytest_deselected(items=[i for i in items if i.name not in only])
    items[:] = keep
"""


def run_suite(suite: Path, server: Any, storage_port: int, work: Path, tests: tuple[str, ...] = ()
              ) -> tuple[int, int, str]:
    """(passed, failed, pytest's output) of the runner against `server`, for these tests (all when none)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "venv").symlink_to(suite_venv(suite))
    env = {**os.environ, "WORK": str(work), "POLYFN_DATA_DIR": str(server.data_dir), "POLYFN_API_KEY": server.key,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = [str(suite / "run-s3-tests"), server.url, str(storage_port)]
    if tests:
        (work / "polyfn_s3_subset.py").write_text(_PLUGIN)
        env["PYTHONPATH"] = str(work)
        env["POLYFN_S3_TESTS_ONLY"] = ",".join(tests)
        args += ["-p", "polyfn_s3_subset"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1400, cwd=REPO)
    m = re.search(r"^(\d+) passed, (\d+) failed", r.stdout, re.M)
    assert m, f"the runner printed no result:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return int(m.group(1)), int(m.group(2)), (work / "pytest.log").read_text(errors="replace")


def test_s3_conformance_subset_does_not_regress(tmp_path: Path) -> None:
    suite = suite_dir()
    if suite is None:
        pytest.skip("Ceph's s3-tests are not here: they are third-party code kept outside this repository "
                    "(set POLYFN_S3_TESTS_DIR to the directory with run-s3-tests and s3-tests/)")
    port = free_port()
    srv = start_server(tmp_path / "data", "--storage-port", str(port))
    try:
        passed, _failed, log = run_suite(suite, srv, port, tmp_path / "work", SUBSET)
    finally:
        srv.stop()
    server_log = srv.log.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-5000:]
    fails = sorted(set(re.findall(r"^FAILED \S+::(\w+)", log, re.M)))
    assert passed >= RECORDED_SUBSET_PASSED, (f"{passed} of {len(SUBSET)} passed, fewer than the recorded "
                                              f"{RECORDED_SUBSET_PASSED}; failing: {fails}")
