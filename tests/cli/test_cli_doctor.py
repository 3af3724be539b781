"""`polyfn doctor` reports each sandbox layer and the overall level."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_doctor_json_lists_every_layer() -> None:
    r = subprocess.run([sys.executable, "-m", "polyfn", "doctor", "--json"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for layer in ("cgroup", "mount", "root", "pid", "net", "egress", "uid", "seccomp", "rlimits"):
        assert layer in res and isinstance(res[layer], str)
    assert res["level"] in ("full", "partial", "rlimits only")
    assert res["rlimits"] == ""
    # how `--network polyfn/none` is enforced here, or why it cannot be
    assert ("relays" in res["network_policy"]) == (res["net"] == ""), res["network_policy"]
    assert "node and http" in res["launched_runtimes"]
    # how deploy-time builds run: their own uid as root with a mount namespace, else as the server
    isolated = os.geteuid() == 0 and res["mount"] == ""
    assert ("uid of their own" in res["builds"]) == isolated, res["builds"]
    # the seccomp mode: the allow-lists when the kernel takes a filter, else why not
    assert res["seccomp_mode"].startswith("allow-list per runtime" if res["seccomp"] == "" else "off ("), res


def test_doctor_text_names_the_level() -> None:
    r = subprocess.run([sys.executable, "-m", "polyfn", "doctor"], capture_output=True, text=True, timeout=60,
                       env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "isolation level:" in r.stdout and "seccomp" in r.stdout and "no VM boundary" in r.stdout
    assert "network policy:" in r.stdout and "seccomp mode:" in r.stdout


def test_doctor_says_when_builds_run_as_the_server() -> None:
    r = subprocess.run([sys.executable, "-m", "polyfn", "doctor", "--json"], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin", "POLYFN_SANDBOX_DISABLE": "build"})
    assert r.returncode == 0, r.stderr
    assert "run as the server's user" in json.loads(r.stdout)["builds"]


def test_doctor_shows_the_degraded_network_without_nft() -> None:
    """Without the nft tool (here: not on PATH) the default network cannot reach the internet: said plainly."""
    r = subprocess.run([sys.executable, "-m", "polyfn", "doctor", "--json"], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/nonexistent"})
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["egress"], res
    assert res["level"] != "full"
    if not res["net"]:
        assert "degraded" in res["network_policy"] and "not the internet" in res["network_policy"], res
    else:
        assert "host network" in res["network_policy"], res
