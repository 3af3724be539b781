"""The instance's import purge (`startup.isolate_imports`): from the zygote's snapshot of sys.modules (the
way a forked instance does it, without touching every module object) it forgets exactly what the walk over
sys.modules forgets. Each case runs in a forked child, whose sys.modules may be wrecked."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from polyfn.runtimes.python import startup

from ...sandbox.test_sandbox_layers import in_child as run_in_child


def in_child(fn) -> dict:  # type: ignore[no-untyped-def,type-arg]
    status, out = run_in_child(lambda: json.dumps(fn()))
    assert status == 0, out
    return json.loads(out)


def fake(name: str, file: str | None) -> types.ModuleType:
    mod = types.ModuleType(name)
    if file is not None:
        mod.__file__ = file
    sys.modules[name] = mod
    return mod


def purge(snapshot: bool, tmp: str, stage: str = "") -> dict:  # type: ignore[type-arg]
    """Modules of every kind, some before the snapshot and some after; then the purge (with `stage`: as in a
    blank that staged a root filesystem there, which decides what is gone)."""
    kept = os.path.join(tmp, "kept.py")
    open(kept, "w").close()
    gone = os.path.join(tmp, "gone.py")  # never made
    fake("t_before_kept", kept)
    fake("t_before_gone", gone)
    fake("t_before_builtin", None)
    if snapshot:
        startup.snapshot_modules()
    else:
        startup._SNAPSHOT = None
    fake("t_after_kept", kept)
    fake("t_after_gone", gone)
    fake("polyfn.t_after", kept)
    spec = startup.InstanceSpec(function="f", revision=1, instance_id="i", handler="handler.handler",
                                code_dir=tmp, flavor="native")
    finders_before = sys.path_importer_cache
    prepared = None
    if stage:
        from polyfn.sandbox.plan import Prepared

        prepared = Prepared(root_staged="digest")
        startup.stage_imports(prepared, stage)
    startup.isolate_imports(spec, [tmp], prepared)
    return {"left": sorted(m for m in sys.modules if m.startswith(("t_", "polyfn"))),
            "snapshot_used": startup._SNAPSHOT is not None,
            "fresh_finders": sys.path_importer_cache is not finders_before and not sys.path_importer_cache,
            "path": sys.path[0]}


@pytest.mark.parametrize("snapshot", [True, False])
def test_the_purge_forgets_polyfn_and_modules_whose_files_are_gone(snapshot: bool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = in_child(lambda: purge(snapshot, str(tmp_path)))
    assert out["left"] == ["t_after_kept", "t_before_builtin", "t_before_kept"]
    assert out["snapshot_used"] == snapshot
    assert out["fresh_finders"]
    assert out["path"] == str(tmp_path)


def test_a_snapshot_that_no_longer_describes_sys_modules_is_not_used(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def body() -> dict:  # type: ignore[type-arg]
        startup.snapshot_modules()
        newest = next(reversed(sys.modules))
        del sys.modules[newest]  # the snapshot's newest module gone, another in its place
        fake("t_other", str(tmp_path / "gone.py"))
        return {"used": startup._forget_from_snapshot(), "left": "t_other" in sys.modules}

    assert in_child(body) == {"used": False, "left": True}


def test_a_blank_that_staged_the_root_found_what_is_gone_there(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stage = tmp_path / "stage"
    (stage / str(tmp_path).lstrip("/")).mkdir(parents=True)
    (stage / str(tmp_path).lstrip("/") / "kept.py").touch()  # in the staged root: kept, like on the host
    out = in_child(lambda: purge(True, str(tmp_path), str(stage)))
    assert out["left"] == ["t_after_kept", "t_before_builtin", "t_before_kept"]
    # what the staged root lacks is forgotten even where the host has it; a link out of the stage counts as lacking
    (stage / str(tmp_path).lstrip("/") / "kept.py").unlink()
    (stage / str(tmp_path).lstrip("/") / "kept.py").symlink_to(tmp_path / "kept.py")
    out = in_child(lambda: purge(True, str(tmp_path), str(stage)))
    assert out["left"] == ["t_after_kept", "t_before_builtin"]


def test_a_package_zygotes_modules_in_its_layer_are_kept_by_its_blanks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A package zygote's blank (runtimes/python/pkgzygote.py): its layer is not in the staged root but is bound
    at the same path in each of its instances, so the modules imported from it stay."""
    stage = tmp_path / "stage"
    stage.mkdir()

    def body() -> dict:  # type: ignore[type-arg]
        startup.LAYER = str(tmp_path)
        return purge(True, str(tmp_path), str(stage))

    out = in_child(body)
    assert out["left"] == ["t_after_kept", "t_before_builtin", "t_before_gone", "t_before_kept"]
    # (t_before_gone stays too: a layer's file is trusted to be there, as the layer is bound whole)
