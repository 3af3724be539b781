"""OpenFaaS `stack.yml` (faas-cli's file): one polyfn function per entry of `functions`.

`lang` picks the flavor (python3 → `openfaas`, python3-http/-flask → `openfaas-http`, node* → node),
`handler` is the code folder, `environment`/`environment_file`, `limits.memory`, and the scale labels map to
spec fields; the cron-connector annotations (`topic: cron-function`, `schedule`) become a cron trigger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
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
from polyfn.model import FunctionSpec

FN_KEYS = {"lang", "handler", "image", "environment", "environment_file", "limits", "requests", "labels",
           "annotations", "secrets", "skip_build", "readonly_root_filesystem", "constraints"}
FN_IGNORED = {"build_args", "build_options", "namespace", "fprocess", "build_secrets", "platforms"}

# How an OpenFaaS function's fields are kept on a polyfn function (annotations), so the OpenFaaS API shows them
# back as given and `faas-cli diff` finds no drift: labels, annotations, the image, and what polyfn does not
# apply itself (read-only root, constraints, the limits' and requests' own strings).
LABEL, ANN, IMAGE = "openfaas.label/", "openfaas.annotation/", "openfaas/image"
READ_ONLY, CONSTRAINTS, LIMITS, REQUESTS = ("openfaas/readOnlyRootFilesystem", "openfaas/constraints",
                                            "openfaas/limits", "openfaas/requests")
SCALE_MIN, SCALE_MAX = "com.openfaas.scale.min", "com.openfaas.scale.max"


def vendor_fields(where: str, image: Any, labels: Any, annotations: Any, limits: Any, requests: Any,
                  secrets: Any, read_only: Any, constraints: Any) -> dict[str, Any]:
    """The polyfn spec fields of an OpenFaaS function as given (stack.yml or the gateway API's deploy body): all
    of them, so a redeploy applies the definition as it is now (a label dropped from it is dropped here; the
    scale labels' absence means polyfn's defaults). ManifestError names the field at `where`."""
    import json

    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    ann = {LABEL + k: v for k, v in labels.items()}
    ann.update({ANN + str(k): str(v) for k, v in (annotations or {}).items()})
    if image:
        ann[IMAGE] = str(image)
    if read_only:
        ann[READ_ONLY] = "true"
    if constraints:
        ann[CONSTRAINTS] = json.dumps([str(c) for c in constraints])
    fields: dict[str, Any] = {"annotations": ann, **{f.name: f.default for f in msgspec.structs.fields(FunctionSpec)
                                                     if f.name in ("min_instances", "max_instances")}}
    for key, value in ((LIMITS, limits), (REQUESTS, requests)):
        value = {k: str(v) for k, v in (value or {}).items() if k in ("memory", "cpu") and v}
        if value:
            ann[key] = json.dumps(value)
    if (limits or {}).get("memory"):
        fields["memory"] = memory_mb(limits["memory"], f"{where}.limits.memory")
    for label, field in ((SCALE_MIN, "min_instances"), (SCALE_MAX, "max_instances")):
        if label in labels:
            try:
                fields[field] = int(labels[label])
            except ValueError:
                raise ManifestError(f"{where}.labels.{label}: {labels[label]!r} is not a number") from None
    if not isinstance(secrets or [], list):
        raise ManifestError(f"{where}.secrets: a list of secret names")
    fields["secrets"] = [str(x) for x in secrets or []]  # files under /run/secrets, as OpenFaaS mounts them
    return fields


def cron_schedule(annotations: dict[str, Any], where: str) -> str | None:
    """The cron-connector's 5-field schedule (`topic: cron-function`, `schedule`), checked; None without one."""
    if annotations.get("topic") != "cron-function" and "schedule" not in annotations:
        return None
    try:
        return str(schedules.cron5(str(annotations.get("schedule", "")))["cron"])
    except ValueError as e:
        raise ManifestError(f"{where}.schedule: {e}") from None


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
        if "cpu" in limits:
            pf.notes.append(f"{where}.limits.cpu: polyfn does not limit CPU per function yet")
        annotations = {str(k): str(v) for k, v in (f.get("annotations") or {}).items()}
        pf.spec.update(vendor_fields(where, f.get("image"), f.get("labels"), annotations, limits, f.get("requests"),
                                     f.get("secrets"), f.get("readonly_root_filesystem"), f.get("constraints")))
        if f.get("secrets"):
            pf.notes.append(f"{where}.secrets: {', '.join(map(str, f['secrets']))} mounted from polyfn's secrets as "
                            "/run/secrets/NAME (create them with `polyfn secret set NAME` or `faas-cli secret create "
                            "NAME`)")
        sched = cron_schedule(annotations, f"{where}.annotations")
        if sched is not None:
            pf.triggers.append(TriggerDecl("cron", {"cron": sched}, f"{where}.annotations"))
        pf.triggers.append(TriggerDecl("http", {}, where))
    if not plan.functions:
        raise ManifestError("stack.yml: no functions")
    return plan
