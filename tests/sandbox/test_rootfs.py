"""The instance's own root filesystem (sandbox/rootfs.py): what it lists, and the real thing in a child."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from polyfn.sandbox import linux, rootfs

REPO = Path(__file__).resolve().parents[2]


def test_layout_keeps_existing_paths_parents_first() -> None:
    paths = rootfs.layout(["/usr/lib", "/no/such/dir", sys.base_prefix])
    assert "/no/such/dir" not in paths and "/usr" in paths
    assert [p.count("/") for p in paths] == sorted(p.count("/") for p in paths)


def test_etc_names_the_functions_user_only() -> None:
    etc = rootfs.etc_files(200123, 200123)
    assert etc["passwd"].splitlines()[1].startswith("sbx_user:x:200123:200123:")
    assert "daemon" not in etc["passwd"] and "localhost" in etc["hosts"]
    assert "sbx_user" not in rootfs.etc_files(0, 0)["passwd"]


def test_provided_python_is_boto3_not_the_servers_environment() -> None:
    binds, sys_path = rootfs.python_paths()
    names = {os.path.basename(b) for b in binds}
    assert {"boto3", "botocore", "msgspec"} <= names
    assert not names & {"fastapi", "sqlalchemy", "polyfn", "pydantic", "httpx"}
    assert "" not in sys_path and os.getcwd() not in sys_path


def test_the_runtimes_package_metadata_is_one_copied_directory(tmp_path: Path) -> None:
    """The runtime's own packages are bound without their .dist-info (a mount each would cost); their
    metadata is copied into one directory, bound and last on the import path: importlib.metadata finds
    Flask there, nothing of the server's environment, and no RECORD naming files that are not there."""
    from importlib import metadata

    meta = tmp_path / "runtime" / "python-metadata"
    binds, sys_path = rootfs.python_paths(str(meta))
    assert str(meta) in binds and sys_path[-1] == str(meta)
    assert not any(b.endswith(".dist-info") and "flask" in b.lower() for b in binds)
    names = {d.metadata["Name"].lower() for d in metadata.distributions(path=[str(meta)])}
    assert {"flask", "click", "msgspec", "functions-framework"} <= names, names
    assert not names & {"fastapi", "sqlalchemy", "polyfn", "boto3"}, names  # boto3's own metadata is bound
    flask = next(d for d in metadata.distributions(path=[str(meta)]) if d.metadata["Name"].lower() == "flask")
    assert flask.version == metadata.version("flask") and flask.files is None
    (meta / "stale.dist-info").mkdir()
    rootfs.python_paths(str(meta))  # made afresh at each start
    assert not (meta / "stale.dist-info").exists() and sorted(p.name for p in meta.parent.iterdir()) == [meta.name]


PROBE = [str(REPO / "pyproject.toml"), "/etc/shadow", "/home", "/usr/local/bin", "/etc/passwd"]


def _in_own_root(root: list[str], binds: list[str], ahead: str = "") -> dict:
    """Enter the root in a forked child with its own mount namespace; report what it sees. `ahead`: a stage
    directory where the child builds the shared part and enters it first, then attaches `binds` from detached
    copies made here, in the parent's namespace (as a pre-forked blank and the server do)."""
    trees = [linux.open_tree(linux.AT_FDCWD, b, linux.OPEN_TREE_CLONE | linux.AT_RECURSIVE) for b in binds] \
        if ahead else []
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out: dict = {}
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
            if ahead:
                rootfs.build(root, rootfs.site_masks(), 8, ahead)
                rootfs.pivot_ahead(ahead)
                out["desc"] = rootfs.enter_ahead(binds, rootfs.etc_files(0, 0), 8, trees)
                out["mounts"] = [ln for ln in open("/proc/self/mountinfo").read().splitlines() if binds[0] in ln]
            else:
                rootfs.enter(root, binds, rootfs.etc_files(0, 0), 8, rootfs.site_masks())
            rootfs.seal()
            for p in PROBE:
                out[p] = sorted(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p)
            out["boto3"] = os.path.isdir(os.path.dirname(__import__("boto3").__file__))
            out["own"] = sorted(os.listdir(binds[0]))
            try:
                open("/usr/planted", "w")
                out["write_usr"] = "written"
            except OSError as e:
                out["write_usr"] = type(e).__name__
            with open("/tmp/x", "w") as f:
                out["write_tmp"] = f.write("ok")
        except BaseException as e:
            out["error"] = repr(e)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    for fd in trees:
        os.close(fd)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a mount namespace (the e2e attack tests cover "
                    "the user-namespace path)")
@pytest.mark.parametrize("ahead", [False, True], ids=["entered-at-spawn", "entered-ahead"])
def test_a_child_in_its_own_root_sees_nothing_else(tmp_path: Path, ahead: bool) -> None:
    """Also a root entered before the function is known, its code attached from copies made outside: the same
    view (a pre-forked blank's, sandbox.enter_ahead)."""
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "handler.py").write_text("x = 1\n")
    (tmp_path / "stage").mkdir()
    binds, _ = rootfs.python_paths()
    out = _in_own_root(rootfs.layout(binds), [str(tmp_path / "own")], str(tmp_path / "stage") if ahead else "")
    assert "error" not in out, out
    if ahead:
        assert "entered in the blank" in out["desc"]
        assert len(out["mounts"]) == 1 and " ro,nosuid,nodev" in out["mounts"][0], out["mounts"]
    assert out[str(REPO / "pyproject.toml")] is False and out["/etc/shadow"] is False and out["/home"] is False
    assert out["/usr/local/bin"] in ([], False)
    assert out["/etc/passwd"] is True and out["boto3"] is True
    assert out["own"] == ["handler.py"]
    assert out["write_usr"] in ("OSError", "PermissionError") and out["write_tmp"] == 2
