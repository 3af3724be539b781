"""The host is out of reach by default (issue 27): its files from Python, Node and `http` functions, and
polyfn's own Python environment from Python functions (issue 18). Network attacks: test_egress.py.

Each function runs on a real `polyfn serve` with every layer the host allows; the paths tried are real
files of this machine (the project checkout, the data dir, /etc/shadow …) that the test first checks exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..e2e.conftest import REPO, Server
from .conftest import require
from .test_attacks import NODE_ATTACK, READ, attack, healthy, node_attack

HTTP_READER = r'''
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

def probe(paths, dirs):
    out = {}
    for p in paths:
        try:
            with open(p, "rb") as f:
                out[p] = "READ " + f.read(200).decode("latin-1")
        except OSError as e:
            out[p] = type(e).__name__
    for d in dirs:
        try:
            out[d] = sorted(os.listdir(d))
        except OSError as e:
            out[d] = type(e).__name__
    return out

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps(probe(req["paths"], req["dirs"])).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def host_targets(node: Server) -> tuple[list[str], list[str]]:
    """Real host files a function must not read, and directories it must not list."""
    files = [str(REPO / "pyproject.toml"), str(REPO / "README.md"), str(node.data_dir / "admin.key"),
             str(node.data_dir / "polyfn.db"), "/etc/shadow"]
    for f in files:
        assert os.path.exists(f), f"the test needs {f} to exist on the host"
    dirs = [str(REPO), str(node.data_dir), "/home", "/root", "/usr/local/bin", "/var", "/srv", "/opt"]
    return files, dirs


def assert_out_of_reach(out: dict, files: list[str], node: Server) -> None:
    """No host file was read; listed directories show nothing of the host."""
    for f in files:
        assert not str(out[f]).startswith("READ"), f"{f} was readable: {out[f]}"
    text = json.dumps(out)
    assert node.key not in text
    assert "pyproject.toml" not in json.dumps(out[str(REPO)]), out[str(REPO)]
    for d in ("/home", "/var", "/srv", "/opt"):
        assert out[d] in ("FileNotFoundError", "ENOENT", []), f"{d} is visible: {out[d]}"
    assert out["/usr/local/bin"] in ([], "FileNotFoundError", "ENOENT"), out["/usr/local/bin"]
    assert ".bash_history" not in json.dumps(out["/root"]) and ".ssh" not in json.dumps(out["/root"]), out["/root"]
    # at most the paths down to the function's own code and to the runtime's package metadata (a copy of
    # public .dist-info files, runtime/python-metadata)
    listing = out[str(node.data_dir)]
    assert listing in ("FileNotFoundError", "ENOENT", "PermissionError", "EACCES") or \
        set(listing) <= {"code", "runtime"}, listing


def test_python_function_sees_only_its_root(node: Server) -> None:
    require(node, "own root fs")
    files, dirs = host_targets(node)
    out = attack(node, "root-py", READ, {"paths": [*files, "/etc/passwd"], "dirs": [*dirs, "/", "/etc"]})
    assert_out_of_reach(out, files, node)
    passwd = out["/etc/passwd"]
    assert passwd.startswith("READ") and "daemon:" not in passwd, passwd  # generated, not the host's
    assert set(out["/"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "run", "sbin",
                             "tmp", "usr", *(p.split("/")[1] for p in (str(REPO), str(node.data_dir)))}, out["/"]
    assert "shadow" not in out["/etc"] and "hosts" in out["/etc"], out["/etc"]
    healthy(node)


def test_node_function_sees_only_its_root(node: Server) -> None:
    require(node, "own root fs")
    files, dirs = host_targets(node)
    out = node_attack(node, "root-node", NODE_ATTACK,
                      {"paths": files, "dirs": dirs, "kill": [], "writes": [], "connect": []})
    assert_out_of_reach({**out["read"], **out["list"]}, files, node)
    healthy(node)


def test_http_function_sees_only_its_root(node: Server) -> None:
    require(node, "own root fs")
    files, dirs = host_targets(node)
    node.deploy("root-http", {"server.py": HTTP_READER}, runtime="http", handler="python3 server.py")
    r = node.http.post("/fn/root-http", json={"paths": files, "dirs": dirs})
    assert r.status_code == 200, r.text
    assert_out_of_reach(r.json(), files, node)
    healthy(node)


IMPORTS = '''
import importlib, os, sys
def handler(event, context):
    out = {}
    for name in event["modules"]:
        try:
            mod = importlib.import_module(name)
            out[name] = "imported " + str(getattr(mod, "__version__", "")) + " " + str(getattr(mod, "__file__", ""))
        except ImportError as e:
            out[name] = type(e).__name__
    out["sys.path"] = list(sys.path)
    try:
        import boto3
        path = os.path.dirname(boto3.__file__)
        with open(os.path.join(path, "planted.py"), "w"):
            pass
        out["write_boto3"] = "written"
    except OSError as e:
        out["write_boto3"] = type(e).__name__
    return out
'''


def test_python_function_does_not_see_polyfns_environment(node: Server) -> None:
    """Issue 18: the standard library, the provided boto3 and its own code — not fastapi, sqlalchemy,
    polyfn itself or the server's working directory; nor the HTTP servers of the functions-framework
    (uvicorn, gunicorn: polyfn never runs them), though the framework itself imports (GCP-flavored code
    does `import functions_framework`)."""
    hidden = ["fastapi", "sqlalchemy", "polyfn", "polyfn.protocol", "pydantic", "httpx", "alembic", "typer",
              "uvicorn", "gunicorn", "uvicorn_worker", "watchdog", "h11"]
    provided = ["boto3", "json", "functions_framework", "flask.app", "cloudevents.http"]
    out = attack(node, "imports", IMPORTS, {"modules": [*hidden, *provided]})
    for m in hidden:
        assert out[m] == "ModuleNotFoundError", (m, out[m])
    assert out["boto3"].startswith("imported 1."), out["boto3"]
    for m in provided:
        assert out[m].startswith("imported"), (m, out[m])
    server_cwd = os.path.realpath(Path(f"/proc/{node.proc.pid}/cwd"))
    assert server_cwd not in out["sys.path"] and "" not in out["sys.path"], out["sys.path"]
    assert not any("src" == Path(p).name for p in out["sys.path"]), out["sys.path"]
    assert out["write_boto3"] != "written", "the shared provided copy must be read-only"
    healthy(node)


def test_a_functions_own_boto3_wins(node: Server) -> None:
    """A function shipping its own boto3 gets it, not the provided one."""
    own = "__version__ = '0.0.0-own'\n"
    node.deploy("own-boto3", {"handler.py": IMPORTS, "boto3/__init__.py": own})
    r = node.api.post("/v1/functions/own-boto3/invoke", json={"modules": ["boto3"]})
    assert r.status_code == 200, r.text
    assert r.json()["boto3"].startswith("imported 0.0.0-own"), r.json()["boto3"]


METADATA = '''
import importlib.metadata as md
def handler(event, context):
    import flask
    out = {"flask.__version__": flask.__version__}
    for name in event["names"]:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "PackageNotFoundError"
    return out
'''


def test_provided_packages_have_their_metadata(node: Server) -> None:
    """`flask.__version__` and `importlib.metadata.version(...)` of what the runtime provides work inside a
    function (the packages are bound without their .dist-info; a copy of their metadata is on the import
    path), the metadata of polyfn's own environment stays out of sight, and a function's own copy wins."""
    from importlib import metadata

    require(node, "own root fs")
    provided = ["flask", "click", "werkzeug", "msgspec", "functions-framework", "boto3", "botocore"]
    hidden = ["fastapi", "sqlalchemy", "polyfn", "uvicorn"]
    out = attack(node, "metadata", METADATA, {"names": [*provided, *hidden]})
    assert out["flask.__version__"] == metadata.version("flask"), out
    for name in provided:
        assert out[name] == metadata.version(name), (name, out)
    for name in hidden:
        assert out[name] == "PackageNotFoundError", (name, out)
    own = {"handler.py": METADATA, "click-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: click\nVersion: 0.0.1\n"}
    node.deploy("metadata-own", own)
    r = node.api.post("/v1/functions/metadata-own/invoke", json={"names": ["click"]})
    assert r.status_code == 200 and r.json()["click"] == "0.0.1", r.text
