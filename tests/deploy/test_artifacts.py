"""Code archives for a cluster's other nodes: the same files make the same bytes (written once per digest),
they come back as the same files, and the bucket settings are checked before a node starts."""

from __future__ import annotations

import pytest

from polyfn.config import Settings
from polyfn.deploy import archive
from polyfn.deploy.artifacts import S3Artifacts, from_settings, to_zip

FILES = {"handler.py": b"def handler(event, context):\n    return 'one'\n", "lib/util.py": b"X = 1\n",
         "requirements.txt": b""}


def test_same_files_same_archive_and_back() -> None:
    data = to_zip(FILES)
    assert to_zip(dict(reversed(list(FILES.items())))) == data  # order and time do not matter
    back = archive.files_from_zip(data, 1 << 20, 100)
    assert back == FILES and archive.digest(back) == archive.digest(FILES)


def test_one_node_has_no_artifact_store(tmp_path: object) -> None:
    assert from_settings(Settings(data_dir=tmp_path)) is None


def test_bucket_and_prefix_from_the_url(tmp_path: object) -> None:
    a = S3Artifacts(Settings(data_dir=tmp_path, artifacts_url="s3://code/polyfn/prod",
                             artifacts_endpoint="http://127.0.0.1:9000/"))
    assert (a.bucket, a.prefix, a.endpoint) == ("code", "polyfn/prod", "http://127.0.0.1:9000")
    assert a._path("ab" * 32) == "/code/polyfn/prod/" + "ab" * 32 + ".zip"
    assert S3Artifacts(Settings(data_dir=tmp_path, artifacts_url="s3://code",
                                artifacts_endpoint="http://h")).prefix == ""


@pytest.mark.parametrize(("url", "endpoint", "message"), [
    ("s3://code", "", "POLYFN_ARTIFACTS_ENDPOINT"),
])
def test_incomplete_settings_are_refused(tmp_path: object, url: str, endpoint: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3Artifacts(Settings(data_dir=tmp_path, artifacts_url=url, artifacts_endpoint=endpoint))


@pytest.mark.parametrize("url", ["http://code", "s3://", "code", "s3:// space"])
def test_a_url_that_is_not_a_bucket_is_a_settings_error(tmp_path: object, url: str) -> None:
    with pytest.raises(ValueError, match="artifacts_url"):
        Settings(data_dir=tmp_path, artifacts_url=url)
