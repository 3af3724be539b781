"""What a definition file turns into: a plan of functions to deploy, each with its triggers and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfn import model
from polyfn.manifests import runtimes


class ManifestError(Exception):
    """The file cannot be deployed as written; the message names the key and where it is."""


@dataclass
class TriggerDecl:
    kind: str  # http | cron | storage | queue | ...
    config: dict[str, Any]
    where: str  # location in the file, e.g. "functions.hello.events[1].schedule"
    native: bool = False  # config is already polyfn's trigger config (a `polyfn: 1` file): passed as is
    id: str | None = None  # the trigger id the file asked for (else derived from `where`)


def trigger_id(function: str, t: TriggerDecl) -> str:
    """The polyfn trigger id of a file's trigger: the one it asked for, else one derived from where the file
    declares it (so a redeploy replaces it; <= 63 characters)."""
    import hashlib

    if t.id:
        return t.id
    base = function.replace("~", "-")  # (a namespace's function's held name: tenancy.py)
    return f"{base[:40].rstrip('-')}-{t.kind}-{hashlib.sha256(t.where.encode()).hexdigest()[:8]}"


@dataclass
class PlannedFunction:
    name: str  # polyfn function name
    code_dir: Path | None  # the directory whose files are deployed
    spec: dict[str, Any]  # polyfn spec fields (name included)
    where: str
    files: dict[str, bytes] | None = None  # inline code instead of a directory (SAM InlineCode)
    triggers: list[TriggerDecl] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said to the user at deploy time
    error: str | None = None  # this function cannot be deployed (the others still can)
    grants: list[tuple[str, str]] = field(default_factory=list)  # (table, read|write) for the function's key


@dataclass
class Plan:
    format: str
    source: Path
    functions: list[PlannedFunction] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)  # made before the functions are deployed
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"name", "key": {"name", "type"}, "range"?}


def polyfn_name(name: str, where: str) -> str:
    """A vendor function name as a polyfn name (lower case, `_`/`.` → `-`), or ManifestError."""
    n = str(name).strip().lower().replace("_", "-").replace(".", "-")
    try:
        return model.validate_name(n)
    except model.SpecError:
        raise ManifestError(f"{where}: function name {name!r} cannot be a polyfn name "
                            "(1-63 characters a-z, 0-9, '-', starting with a letter)") from None


def check_keys(obj: Any, where: str, known: set[str], ignored: set[str] = frozenset(),  # type: ignore[assignment]
               notes: list[str] | None = None) -> None:
    """Unknown keys are an error naming them; keys polyfn accepts but does not use become notes."""
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(str(k) for k in obj if k not in known and k not in ignored)
    if unknown:
        raise ManifestError(f"{where}: unsupported key(s) {', '.join(unknown)} "
                            f"(supported: {', '.join(sorted(known | set(ignored)))})")
    if notes is not None:
        for k in sorted(str(k) for k in obj if k in ignored):
            notes.append(f"{where}.{k}: accepted, has no effect on polyfn")


def target(flavor: str, lang: str, vendor_runtime: str, fn: PlannedFunction) -> None:
    """Set runtime and flavor on `fn` (or its error when this server cannot run it yet)."""
    try:
        t = runtimes.resolve(flavor, lang, vendor_runtime)
    except runtimes.UnsupportedRuntime as e:
        fn.error = str(e)
        return
    fn.spec.update(runtime=t.runtime, flavor=t.flavor)
    if t.note:
        fn.notes.append(t.note)


def memory_mb(value: Any, where: str) -> int:
    """`128`, `128Mi`, `128M`, `1Gi`, `512MB` → MB."""
    import re

    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(Mi|M|MB|Gi|G|GB|Ki|K)?\s*$", str(value))
    if not m:
        raise ManifestError(f"{where}: memory {value!r} is not a size like 128, 128Mi or 1Gi")
    n = float(m[1])
    unit = (m[2] or "M").upper().rstrip("BI")
    return max(1, int(n * {"M": 1, "G": 1024, "K": 1 / 1024}[unit]))


def env_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{where}: environment must be a mapping of NAME: value")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict | list):
            raise ManifestError(f"{where}.{k}: environment values must be strings, numbers or booleans")
        out[str(k)] = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
    return out
