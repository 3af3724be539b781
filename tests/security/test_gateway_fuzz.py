"""Gateway fuzzing across flavors: hypothesis builds odd HTTP requests (methods, percent-encoded non-Latin-1
paths, queries, content types that lie about their bodies, 1,000-deep JSON, random bytes) and sends them to
every seed example the flavors ship — AWS, GCP, Azure, Aliyun, Tencent, OpenFaaS, Kubeless, OpenWhisk,
WeChat-style Node, Python and Node alike. None may hang, and none may answer a 5xx that is polyfn's: a 5xx
is only allowed when the function itself failed (`X-Polyfn-Function-Error`: the seed's handlers read
fields a fuzzed event lacks, and that is theirs to report).

The control API has its own fuzzer (test_api_fuzz.py). The number of requests per function is bounded
(`POLYFN_FUZZ_EXAMPLES`, default 40) and the generation is derandomized, so CI runs the same requests
every time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..e2e.conftest import REPO, Server, start_server

EXAMPLES = int(os.environ.get("POLYFN_FUZZ_EXAMPLES", "40"))
SEED = REPO / "examples" / "seed"

#: seed example folder → the name it is deployed under (the Go one needs a toolchain build; test_http_runtime has it)
FUNCTIONS = {
    "aws-lambda-reverse": "fz-aws",
    "gcp-hello-http": "fz-gcp",
    "aliyun-python-hello": "fz-ali",
    "kubeless-reverse": "fz-kubeless",
    "openfaas-reverse": "fz-openfaas",
    "serverless-aws-hello-js": "fz-aws-js",
    "aliyun-hello-js": "fz-ali-js",
    "tencent-main-js": "fz-tc-js",
    "tencent-serverless-hello-js": "fz-tc-sls",
    "gcp-helloworld-js": "fz-gcp-js",
    "azure-hello-js": "fz-azure-js",
    "openwhisk-reverse-js": "fz-ow-js",
}


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if shutil.which("node") is None and os.environ.get("CI") != "true":
        pytest.skip("node is not installed: the Node flavors cannot be fuzzed")
    s = start_server(Path(tmp_path_factory.mktemp("polyfn-gwfuzz")))
    for folder, name in FUNCTIONS.items():
        s.cli("deploy", str(SEED / folder), "--name", name, check=True)
    yield s
    s.stop()


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_segments = st.lists(_text.map(lambda t: quote(t, safe="")), max_size=3).map(lambda xs: "".join("/" + x for x in xs))
_query = st.lists(st.tuples(_text, _text), max_size=3)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)
_body = st.one_of(
    st.binary(max_size=256),
    _json.map(lambda v: httpx.Request("POST", "http://x", json=v).content),
    st.integers(1, 1200).map(lambda n: b"[" * n + b"]" * n),  # deep nesting: 1,000 levels is 2 KB
    st.just(b'{"message": "hello", "payload": "hello", "name": "ada"}'),
    _query.map(lambda kv: "&".join(f"{quote(k)}={quote(v)}" for k, v in kv).encode()),
)
_content_type = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
    "multipart/form-data", "multipart/form-data; boundary=x", "text/plain", "application/octet-stream",
    "application/cloudevents+json", "application/xml", "image/png", "application/json; charset=nonsense", "",
])
_headers = st.dictionaries(
    st.sampled_from(["x-custom", "accept", "user-agent", "ce-id", "ce-type", "ce-source", "ce-specversion",
                     "x-forwarded-for", "cookie", "authorization", "x-wx-openid", "x-fc-request-id", "origin"]),
    # (a value's surrounding spaces are not part of it on the wire: HTTP trims them, and httpx refuses them)
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
    .map(lambda v: v.strip(" ")),
    max_size=4)


@pytest.mark.timeout(600)  # ~12 functions × EXAMPLES requests, the Node ones forked from a zygote each
def test_no_platform_errors_no_hangs_across_flavors(fuzz_node: Server) -> None:
    failures: list[str] = []
    seen: dict[int, int] = {}  # status class → count: the requests reached the functions, not just the router
    client = httpx.Client(base_url=fuzz_node.url, timeout=30)

    def fuzzer(name: str):  # type: ignore[no-untyped-def]  # one closure per function (@given takes no defaults)
        @given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
               path=_segments, query=_query, headers=_headers, ctype=_content_type, body=_body)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
                ctype: str | None, body: bytes) -> None:
            h = {k: v.encode("latin-1") for k, v in headers.items()}  # as sent on the wire: Latin-1 octets
            if ctype is not None:
                h["content-type"] = ctype.encode()
            content = None if method in ("GET", "HEAD", "OPTIONS") else body
            try:
                r = client.request(method, f"/fn/{name}{path}", params=query, headers=h, content=content)
            except httpx.TimeoutException:
                failures.append(f"{method} /fn/{name}{path}: no answer in 30 s")
                return
            seen[r.status_code // 100] = seen.get(r.status_code // 100, 0) + 1
            if r.status_code >= 500 and "x-polyfn-function-error" not in r.headers:
                failures.append(f"{method} /fn/{name}{path} {h}: {r.status_code} {r.text[:300]}")
        return run

    for name in FUNCTIONS.values():
        fuzzer(name)()
        assert fuzz_node.proc.poll() is None, f"the server died fuzzing {name}"
    client.close()
    assert not failures, "\n".join(failures[:20])
    assert seen.get(2, 0) >= len(FUNCTIONS), seen
    # and the functions still answer their README's call afterwards
    assert fuzz_node.http.post("/fn/fz-openfaas", content=b"hello").text == "olleh"
