"""Package zygotes against a real node: after a deploy installs a trusted dependency layer, the node forks a
zygote that imported its packages; a brand-new function of the same namespace with the same layer starts from
it (its module finds the package imported), in its own full sandbox; another namespace, another layer or a
layer with pip options does not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import Server, start_server, wait_until

pytestmark = pytest.mark.timeout(600)  # deploys install requirements.txt (pip, from the node's index)

HANDLER = """\
import os, sys
PRELOADED = 'six' in sys.modules
STRANGERS = sorted(m for m in sys.modules if m.startswith('pk1'))  # another function's modules, if any
import six
def handler(event, context):
    seen = None
    if (event or {}).get('probe'):
        try:
            seen = sorted(os.listdir(event['probe']))
        except OSError as e:
            seen = type(e).__name__
    return {'preloaded': PRELOADED, 'uid': os.getuid(), 'six': six.__file__, 'seen': seen,
            'secret': os.environ.get('MINE'), 'strangers': STRANGERS, 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}
"""
REQS = "six==1.16.0\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn"), env={"POLYFN_PACKAGE_ZYGOTE_TRUST": "six"})
    yield s
    s.stop()


def _ready_lines(s: Server) -> list[str]:
    return [ln for ln in s.log.read_text().splitlines() if "package zygote for" in ln and " ready " in ln]


def _start(s: Server, name: str, client: httpx.Client | None = None, body: dict[str, Any] | None = None,
           reqs: str = REQS, files: dict[str, str] | None = None, **spec: Any) -> tuple[dict[str, Any], str]:
    """Deploy `name` with the layer `reqs`, call it once (its first start): (its answer, its init info)."""
    c = client or s.api
    files = {"handler.py": HANDLER, "requirements.txt": reqs, **(files or {})}
    r = c.post("/v1/functions", json={"name": name, "files": files, **spec})
    assert r.status_code in (200, 201), r.text
    r = c.post(f"/v1/functions/{name}/invoke", json=body or {})
    assert r.status_code == 200, r.text
    if client is None:
        return r.json(), s.activation(r.headers["x-polyfn-activation-id"])["init_info"]
    act = c.get(f"/v1/activations/{r.headers['x-polyfn-activation-id']}")
    assert act.status_code == 200, act.text
    return r.json(), act.json()["init_info"]


def test_a_new_function_with_a_served_layer_starts_from_its_package_zygote(server: Server) -> None:
    own = {"handler.py": HANDLER + "import pk1own\n", "pk1own.py": "import six.moves\nX = 1\n"}
    first, info1 = _start(server, "pk1", env={"MINE": "pk1's"}, files=own)
    info = info1
    assert not first["preloaded"] and "zygote: runtime" in info, info
    assert wait_until(lambda: len(_ready_lines(server)) == 1, 60), server.log.read_text()[-3000:]
    assert "(six imported in" in _ready_lines(server)[0]

    code1 = server.data_dir / "code" / "pk1"  # (its revisions' code directories)
    assert code1.is_dir()
    second, info = _start(server, "pk2", body={"probe": str(code1)})
    assert second["preloaded"], (second, info)
    assert "zygote: package" in info and "fork from package zygote (six and 1 of their modules" in info, info
    assert second["six"] == first["six"]  # the same layer, at the same path
    # its own sandbox, as for a clean start: its own uid, nothing of pk1's code or environment
    assert second["uid"] != first["uid"] or first["uid"] == 0
    assert second["secret"] is None and second["strangers"] == []  # nothing of pk1's code or environment
    assert second["pids"] == first["pids"]  # its own pid namespace, as a clean start's
    for layer in ("uid", "seccomp", "pid ns", "net ns", "mount", "cgroup"):  # the same layers as a clean start
        assert (layer in info) == (layer in info1), (layer, info, info1)
    assert second["seen"] in ("FileNotFoundError", "PermissionError", []), second["seen"]
    # its scale-outs come from its own function zygote, built from the package zygote
    assert wait_until(lambda: server.api.get("/v1/functions/pk2").json()["scaling"]["zygote"]["state"] == "ready", 60)


def test_another_namespace_gets_a_package_zygote_of_its_own(server: Server) -> None:
    _start(server, "pk4")
    assert wait_until(lambda: len(_ready_lines(server)) >= 1, 60)
    r = server.api.post("/v1/namespaces", json={"name": "pk-other"})
    assert r.status_code == 201, r.text
    r = server.api.post("/v1/keys", json={"scope": "deploy", "namespace": "pk-other"})
    key = f"{r.json()['access_key_id']}:{r.json()['secret_access_key']}"
    with httpx.Client(base_url=server.url, timeout=300, headers={"authorization": f"Bearer {key}"}) as other:
        out, info = _start(server, "pk5", other)
        assert not out["preloaded"] and "zygote: runtime" in info, info  # the default namespace's is not used
        assert wait_until(lambda: any("for pk-other:" in ln for ln in _ready_lines(server)), 60)
        out, info = _start(server, "pk6", other)
        assert out["preloaded"] and "zygote: package" in info, info
        # the last functions of its layer in that namespace go: so does its package zygote
        for name in ("pk5", "pk6"):
            assert other.delete(f"/v1/functions/{name}").status_code in (200, 202, 204)
        assert wait_until(lambda: any("pk-other:" in ln and "dropped: no function uses its layer" in ln
                                      for ln in server.log.read_text().splitlines()), 30)
    assert "zygote: package" in _start(server, "pk7")[1]  # the default namespace's stays


def test_a_layer_with_pip_options_or_untrusted_packages_gets_none(server: Server) -> None:
    for i, reqs in enumerate(("--prefer-binary\nsix==1.16.0\n", "six==1.16.0\nsetuptools\n")):
        _start(server, f"pk-none{i}a", reqs=reqs)
        assert wait_until(lambda n=i + 1: server.log.read_text().count("no package zygote") == n, 60)
        out, info = _start(server, f"pk-none{i}b", reqs=reqs)
        assert not out["preloaded"] and "zygote: runtime" in info, info
    log = server.log.read_text()
    assert "no package zygote: its requirements.txt has options" in log
    assert "'setuptools' is not in POLYFN_PACKAGE_ZYGOTE_TRUST" in log
