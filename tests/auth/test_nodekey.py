"""The node key check's decision, against real Fernet tokens (polyfn.auth.nodekey.verdict)."""

from __future__ import annotations

from pathlib import Path

from polyfn.auth.nodekey import verdict
from polyfn.auth.secrets import SecretBox


def test_verdicts(tmp_path: Path) -> None:
    cluster = SecretBox(tmp_path / "cluster.key")
    tokens = [cluster.encrypt("pfk_one"), cluster.encrypt("pfk_two")]
    other_path = tmp_path / "other.key"
    SecretBox(other_path).encrypt("made so the file exists")
    missing = tmp_path / "missing.key"

    assert verdict(missing, SecretBox(missing), []) is None  # first node of a new cluster
    assert not missing.exists()
    assert verdict(tmp_path / "cluster.key", cluster, tokens) is None
    no_key = verdict(missing, SecretBox(missing), tokens)
    assert no_key is not None and "missing" in no_key and "copy node.key" in no_key
    assert not missing.exists(), "the check must not make a key of its own"
    wrong = verdict(other_path, SecretBox(other_path), tokens)
    assert wrong is not None and "2 of the 2" in wrong and "not this cluster's node key" in wrong
    mixed = verdict(other_path, SecretBox(other_path), [*tokens, SecretBox(other_path).encrypt("x")])
    assert mixed is not None and "2 of the 3" in mixed
