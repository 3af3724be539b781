"""OpenFaaS `stack.yml` (faas-cli's file): one polyfn function per entry of `functions`.

`lang` picks the flavor (python3 → `openfaas`, python3-http/-flask → `openfaas-http`, node* → node),
`handler` is the code folder, `environment`/`environment_file`, `limits.memory`, and the scale labels map to
spec fields; the cron-connector annotations (`topic: cron-function`, `schedule`) become a cron trigger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from polyfn.manifests import schedules
from polyfn.manifests.model import (
    ManifestError,
    Plan,
    PlannedFunction,
    TriggerDecl,
    check_keys,
    env_map,
    memory_mb,
    polyfn_name,
    target,
)

FN_KEYS = {"lang", "handler", "image", "environment", "environment_file", "limits", "requests", "labels",
           "annotations", "secrets", "skip_build"}
FN_IGNORED = {"build_args", "build_options", "readonly_root_filesystem", "constraints", "namespace",
              "fprocess", "build_secrets", "platforms"}


def lang_target(lang: str) -> tuple[str, str] | None:
    """(flavor, language) for an OpenFaaS template name."""
    lang = lang.lower()
    if lang in ("python3", "python", "python27", "python3-debian", "python3-armhf"):
        return "openfaas", "python"
    if lang.startswith("python3-") or lang.startswith("python-"):
        return "openfaas-http", "python"
    if lang.startswith("node"):
        return "openfaas-http", "node"
    return None


def parse(doc: dict[str, Any], path: Path, params: dict[str, str]) -> Plan:
    plan = Plan("openfaas", path)
    check_keys(doc, "stack.yml", {"version", "provider", "functions"}, {"configuration"}, plan.notes)
    check_keys(doc.get("provider"), "provider", {"name", "gateway"}, {"network"}, plan.notes)
    base = path.parent
    for key, f in (doc.get("functions") or {}).items():
        where = f"functions.{key}"
        check_keys(f, where, FN_KEYS, FN_IGNORED, plan.notes)
        pf = PlannedFunction(polyfn_name(key, where), None, {}, where)
        pf.spec["name"] = pf.name
        plan.functions.append(pf)
        lt = lang_target(str(f.get("lang", "")))
        if lt is None:
            pf.error = (f"{where}.lang: {f.get('lang')!r} builds a container image; polyfn runs Python and Node "
                        "templates (python3, python3-http, python3-flask, node*)")
            continue
        target(lt[0], lt[1], str(f.get("lang")), pf)
        handler_dir = (base / str(f.get("handler", "."))).resolve()
        if not handler_dir.is_dir():
            raise ManifestError(f"{where}.handler: {handler_dir} is not a directory")
        pf.code_dir = handler_dir
        if lt == ("openfaas", "python"):
            pf.spec["handler"] = "handler.handle"
        env: dict[str, str] = {}
        for i, ef in enumerate(f.get("environment_file") or []):
            p = base / str(ef)
            try:
                env.update(env_map((yaml.safe_load(p.read_text()) or {}).get("environment"),
                                   f"{where}.environment_file[{i}]"))
            except OSError as e:
                raise ManifestError(f"{where}.environment_file[{i}]: cannot read {p}: {e}") from None
        env.update(env_map(f.get("environment"), f"{where}.environment"))
        if env:
            pf.spec["env"] = env
        limits = f.get("limits") or {}
        check_keys(limits, f"{where}.limits", {"memory", "cpu"})
        if "memory" in limits:
            pf.spec["memory"] = memory_mb(limits["memory"], f"{where}.limits.memory")
        if "cpu" in limits:
            pf.notes.append(f"{where}.limits.cpu: polyfn does not limit CPU per function yet")
        labels = {str(k): str(v) for k, v in (f.get("labels") or {}).items()}
        annotations = {str(k): str(v) for k, v in (f.get("annotations") or {}).items()}
        for label, field in (("com.openfaas.scale.min", "min_instances"), ("com.openfaas.scale.max", "max_instances")):
            if label in labels:
                try:
                    pf.spec[field] = int(labels[label])
                except ValueError:
                    raise ManifestError(f"{where}.labels.{label}: {labels[label]!r} is not a number") from None
        ann = {f"openfaas.label/{k}": v for k, v in labels.items()}
        ann.update({f"openfaas.annotation/{k}": v for k, v in annotations.items()})
        if f.get("image"):
            ann["openfaas/image"] = str(f["image"])
        if ann:
            pf.spec["annotations"] = ann
        for s in f.get("secrets") or []:
            pf.notes.append(f"{where}.secrets: secret {s!r} skipped: polyfn has no secret store; "
                            "pass the value as an environment variable")
        if annotations.get("topic") == "cron-function" or "schedule" in annotations:
            try:
                sched = schedules.cron5(annotations.get("schedule", ""))
            except ValueError as e:
                raise ManifestError(f"{where}.annotations.schedule: {e}") from None
            pf.triggers.append(TriggerDecl("cron", sched, f"{where}.annotations"))
        pf.triggers.append(TriggerDecl("http", {}, where))
    if not plan.functions:
        raise ManifestError("stack.yml: no functions")
    return plan
