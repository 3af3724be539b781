"""Which dependency layers get a package zygote (instances/pkgzygote.py `scan_layer`): only those whose every
distribution is on the operator's trust list and whose requirements.txt names packages of the node's index
(no pip options, URLs or paths); the modules it imports come from each distribution's top_level.txt or RECORD."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfn.instances.pkgzygote import normalize, scan_layer, used_modules


def dist(layer: Path, name: str, version: str, record: list[str], top_level: str | None = None) -> None:
    d = layer / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    (d / "RECORD").write_text("".join(f"{p},sha256=x,1\n" for p in record))
    if top_level is not None:
        (d / "top_level.txt").write_text(top_level)


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    (tmp_path / ".requirements.txt").write_text("# a comment\nnumpy\nPillow==13.0.0\nsix\n")
    dist(tmp_path, "numpy", "2.4.6", ["numpy/__init__.py", "numpy/core/x.py", "numpy.libs/libopenblas.so",
                                       "numpy-2.4.6.dist-info/RECORD", "bin/f2py", "numpy/_private.py"])
    dist(tmp_path, "pillow", "13.0.0", ["PIL/__init__.py"], top_level="PIL\n")
    dist(tmp_path, "six", "1.16.0", ["six.py", "__pycache__/six.cpython-311.pyc"])
    return tmp_path


def test_a_trusted_layer_imports_each_distributions_top_level_modules(layer: Path) -> None:
    assert scan_layer(str(layer), {"numpy", "pillow", "six"}) == (["PIL", "numpy", "six"], "")


def test_one_untrusted_distribution_and_the_layer_gets_none(layer: Path) -> None:
    modules, why = scan_layer(str(layer), {"numpy", "six"})
    assert modules == [] and "'pillow' is not in POLYFN_PACKAGE_ZYGOTE_TRUST" in why


@pytest.mark.parametrize("line", ["--index-url http://elsewhere/simple", "-e .", "numpy @ https://x/numpy.whl",
                                  "./local.whl", "/abs/pkg", "git+https://x/y.git", "-r other.txt"])
def test_requirements_beyond_the_nodes_index_get_none(layer: Path, line: str) -> None:
    (layer / ".requirements.txt").write_text(f"numpy\n{line}\n")
    modules, why = scan_layer(str(layer), {"numpy", "pillow", "six"})
    assert modules == [] and "options, URLs or paths" in why


def test_names_are_compared_normalized() -> None:
    assert normalize("Scikit_Learn") == normalize("scikit-learn") == normalize("scikit.learn") == "scikit-learn"


def test_the_submodules_a_functions_code_imports_from_the_layer(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("import os, numpy\nimport PIL.Image as I\nfrom sklearn.linear_model import "
                                         "LinearRegression, Ridge\nfrom . import sibling\nfrom mine.sub import x\n"
                                         "from numpy import *\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("from scipy.stats import norm\n")
    (tmp_path / "broken.py").write_text("def (:\n")  # a syntax error: skipped, never run
    assert used_modules(str(tmp_path), {"numpy", "PIL", "sklearn", "scipy"}) == [
        "PIL.Image", "scipy.stats", "scipy.stats.norm", "sklearn.linear_model",
        "sklearn.linear_model.LinearRegression", "sklearn.linear_model.Ridge"]


def test_switched_off_or_beyond_the_budget_nothing_is_built(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from polyfn.instances.pkgzygote import PackageZygotes

    def manager(on: bool, reserved: int) -> SimpleNamespace:
        s = SimpleNamespace(package_zygotes=on, package_zygote_trust="six", package_zygote_memory_mb=512)
        return SimpleNamespace(settings=s, reserved_mb=lambda: reserved, memory_budget_mb=1000)

    rev = SimpleNamespace(function="f", deps_dir=str(tmp_path), code_dir="", spec=SimpleNamespace(runtime="python"))
    for m in (manager(False, 0), manager(True, 990)):  # (a build would need a running loop: it is never started)
        pkzs = PackageZygotes(m)
        pkzs.want(rev)
        assert not pkzs.building and not pkzs.ready
    assert PackageZygotes.key_for(rev) == ("default", str(tmp_path))
    assert PackageZygotes.key_for(SimpleNamespace(function="ns~f", deps_dir="", spec=rev.spec)) is None
    assert PackageZygotes.key_for(SimpleNamespace(function="ns~f", deps_dir="/d", spec=rev.spec)) == ("ns", "/d")
