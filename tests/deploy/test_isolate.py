"""The build sandbox's pure and local parts (deploy/isolate.py): the environment a build keeps, the operator's
tool settings copied into its HOME, the seal of its output, the uids, and removing a tree without following
links. The sandbox itself, through real deploys: tests/security/test_build_isolation.py."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from polyfn.deploy.archive import remove_tree
from polyfn.deploy.isolate import BuildUids, build_env, copy_user_config, pip_config, seal, strip_credentials


def test_build_env_keeps_only_the_tools_settings() -> None:
    server = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/root", "POLYFN_API_KEY": "pfk_x",
              "POLYFN_DATABASE_URL": "postgresql://u:p@db/polyfn", "DATABASE_URL": "postgres://x", "AWS_SECRET_ACCESS_KEY": "s",
              "GOOGLE_APPLICATION_CREDENTIALS": "/root/sa.json", "PIP_INDEX_URL": "https://idx/simple",
              "PIP_FIND_LINKS": "/opt/wheels", "npm_config_registry": "https://r/", "GOPROXY": "https://p",
              "GOFLAGS": "-mod=mod", "https_proxy": "http://proxy:3128", "PIP_CONFIG_FILE": "/root/pip.conf",
              "SSH_AUTH_SOCK": "/tmp/ssh"}
    env = build_env(server, Path("/b/home"), Path("/b/tmp"))
    assert env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PIP_INDEX_URL": "https://idx/simple",
                   "PIP_FIND_LINKS": "/opt/wheels", "npm_config_registry": "https://r/", "GOPROXY": "https://p",
                   "GOFLAGS": "-mod=mod", "https_proxy": "http://proxy:3128", "HOME": "/b/home", "TMPDIR": "/b/tmp",
                   "XDG_CONFIG_HOME": "/b/home/.config", "XDG_CACHE_HOME": "/b/home/.cache"}
    assert build_env({}, Path("/h"), Path("/t"))["PATH"]  # a default PATH when the server has none


def test_operator_tool_config_is_copied_into_the_builds_home(tmp_path: Path) -> None:
    home, build_home = tmp_path / "root", tmp_path / "build"
    (home / ".config/pip").mkdir(parents=True)
    (home / ".config/pip/pip.conf").write_text("[global]\nfind-links = /opt/wheels\ntimeout = 10\n")
    (home / ".pip").mkdir()
    (home / ".pip/pip.conf").write_text("[global]\ntimeout = 5\n[install]\nno-compile = yes\n")  # (older name)
    (home / ".npmrc").write_text("fund=false\n")
    extra = tmp_path / "extra.conf"
    extra.write_text("[global]\nextra-index-url = file:///opt/pypi/simple\n")
    copied = copy_user_config({"HOME": str(home)}, build_home, site=(), npm_global=())
    assert sorted(p.relative_to(build_home).as_posix() for p in copied) == [".config/pip/pip.conf", ".npmrc"]
    pip_conf = (build_home / ".config/pip/pip.conf").read_text()
    # one file in pip's precedence (two [global] sections in one file would be an error to pip's parser)
    assert pip_conf.count("[global]") == 1 and "timeout = 10" in pip_conf and "no-compile = yes" in pip_conf
    assert "find-links = /opt/wheels" in pip_conf
    assert (build_home / ".npmrc").read_text().startswith("fund=false")
    # PIP_CONFIG_FILE naming a file: pip reads it last and the user's files not at all
    conf = pip_config({"HOME": str(home), "PIP_CONFIG_FILE": str(extra)}, site=())
    assert "file:///opt/pypi/simple" in conf and "/opt/wheels" not in conf


def test_credentials_stay_out_of_a_builds_settings(tmp_path: Path) -> None:
    """A deployer's setup.py reads whatever its build gets: URLs lose their user and password, npm its tokens."""
    assert strip_credentials("https://u:p%40ss@idx.example.com/simple https://idx2/x") == \
        "https://idx.example.com/simple https://idx2/x"
    assert strip_credentials("http://token@proxy:3128") == "http://proxy:3128"
    assert strip_credentials("/opt/wheels") == "/opt/wheels"
    server = {"PATH": "/bin", "PIP_INDEX_URL": "https://user:tok@idx/simple", "https_proxy": "http://u:p@proxy:3128",
              "npm_config__authToken": "npm-tok", "npm_config_registry": "https://u:p@r/", "GOPROXY": "https://u:p@g"}
    env = build_env(server, Path("/h"), Path("/t"))
    assert env["PIP_INDEX_URL"] == "https://idx/simple" and env["https_proxy"] == "http://proxy:3128"
    assert env["npm_config_registry"] == "https://r/" and env["GOPROXY"] == "https://g"
    assert "npm_config__authToken" not in env
    assert build_env(server, Path("/h"), Path("/t"), credentials=True)["npm_config__authToken"] == "npm-tok"
    home, build_home = tmp_path / "root", tmp_path / "build"
    (home / ".config/pip").mkdir(parents=True)
    (home / ".config/pip/pip.conf").write_text("[global]\nindex-url = https://me:s3cret@idx.example.com/simple\n")
    site = tmp_path / "etc-pip.conf"
    site.write_text("[global]\nextra-index-url = https://site:s3cret@idx2.example.com/simple\ntimeout = 7\n")
    (home / ".npmrc").write_text("//registry.example.com/:_authToken=s3cret\nregistry=https://registry.example.com/\n")
    conf = pip_config({"HOME": str(home)}, site=(str(site), str(tmp_path / "no-prefix-pip.conf")))
    assert "s3cret" not in conf and "index-url = https://idx.example.com/simple" in conf and "timeout = 7" in conf
    assert "https://idx2.example.com/simple" in conf
    assert "me:s3cret@" in pip_config({"HOME": str(home)}, credentials=True, site=(str(site),))
    assert "index-url = https://idx.example.com/simple" in pip_config({"HOME": str(home)}, site=())
    copy_user_config({"HOME": str(home)}, build_home, site=(), npm_global=())
    npmrc = (build_home / ".npmrc").read_text()
    assert "s3cret" not in npmrc and "registry=https://registry.example.com/" in npmrc


def test_seal_makes_the_output_read_only_without_following_links(tmp_path: Path) -> None:
    me = os.getuid()
    out = tmp_path / "out"
    (out / "pkg").mkdir(parents=True)
    (out / "pkg" / "mod.py").write_text("x = 1\n")
    (out / "pkg" / "mod.py").chmod(0o666)
    (out / "pkg" / "tool").write_text("#!/bin/sh\n")
    (out / "pkg" / "tool").chmod(0o4777)
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o700)
    (out / "link").symlink_to(outside)
    os.mkfifo(out / "pipe")
    seal(out, me)
    assert stat.S_IMODE((out / "pkg" / "mod.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "pkg" / "tool").stat().st_mode) == 0o755  # setuid and others' write gone
    assert stat.S_IMODE((out / "pkg").stat().st_mode) == 0o755
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700  # the link's target is untouched
    assert not (out / "pipe").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="making a file of another uid needs root")
def test_seal_refuses_an_entry_that_is_not_the_builds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "theirs").write_text("x")
    os.chown(out, 260_001, 260_001)
    with pytest.raises(ValueError, match="theirs"):
        seal(out, 260_001)


def test_remove_tree_never_follows_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o700)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "to-outside").symlink_to(outside)
    (tree / "sub").chmod(0o500)
    remove_tree(tree)
    assert not tree.exists()
    assert outside.is_dir() and stat.S_IMODE(outside.stat().st_mode) == 0o700


def test_build_uids_one_per_running_build_across_nodes(tmp_path: Path) -> None:
    """Two nodes' allocators (two processes on one host) share the lock directory: never the same uid at once."""
    async def go() -> None:
        node1, node2 = BuildUids(1000, 2, tmp_path, poll=0.01), BuildUids(1000, 2, tmp_path, poll=0.01)
        a, b = await node1.take(), await node2.take()
        assert {a, b} == {1000, 1001}
        third = asyncio.ensure_future(node1.take())
        await asyncio.sleep(0.05)
        assert not third.done()  # waits for a free one
        await node2.give(b)
        assert await asyncio.wait_for(third, 1) == b

    asyncio.run(go())


def test_has_credentials_says_when_the_operators_settings_hold_some(tmp_path: Path) -> None:
    from polyfn.deploy.isolate import has_credentials

    (tmp_path / ".npmrc").write_text("fund=false\n")
    plain = {"HOME": str(tmp_path), "PIP_INDEX_URL": "https://idx/simple"}
    assert not has_credentials({**plain, "PIP_CONFIG_FILE": "/nonexistent"}) or Path("/etc/pip.conf").exists()
    assert has_credentials({**plain, "PIP_EXTRA_INDEX_URL": "https://u:p@idx2/simple"})
    (tmp_path / ".npmrc").write_text("//r/:_authToken=x\n")
    assert has_credentials(plain)


def test_a_build_line_past_the_readers_limit_is_left_out_not_a_crash(tmp_path: Path) -> None:
    """A build tool printing one line of 100 KB (a deployer's setup.py can) made the reader raise ValueError: the
    deploy failed with a 500. Now the line is left out (said once), the rest is read, the exit code kept."""
    import sys

    from polyfn.deploy.isolate import run_streaming

    code = "print('x' * 100_000); print('y' * 3000); print('after'); raise SystemExit(3)"
    seen: list[str] = []
    rc, tail = asyncio.run(run_streaming([sys.executable, "-c", code], tmp_path, {}, seen.append, timeout=60))
    assert rc == 3 and tail[-1] == "after", tail
    assert "(an output line longer than 64 KiB was left out)" in tail
    assert all(len(line) <= 2002 for line in tail) and any(line.startswith("yyy") for line in tail), tail
