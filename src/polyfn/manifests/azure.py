"""Azure Functions app folders (programming model v1): `host.json` plus one sub-folder per function with
a `function.json`. The whole app folder is the code (functions share modules and requirements.txt); each
function's handler is `<Folder>.<entryPoint>` (Python: `scriptFile` `__init__.py`, entry point `main`).

Bindings: `httpTrigger` → HTTP, `timerTrigger` → cron (NCRONTAB or TimeSpan), `blobTrigger` → storage,
`queueTrigger`/`serviceBusTrigger` → queue; output bindings other than `http` are reported as unsupported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from polyfn.manifests import schedules
from polyfn.manifests.model import (
    ManifestError,
    Plan,
    PlannedFunction,
    TriggerDecl,
    check_keys,
    polyfn_name,
    target,
)

FN_KEYS = {"bindings", "scriptFile", "entryPoint", "disabled"}
FN_IGNORED = {"$schema", "generatedBy", "configurationSource", "excluded"}
HOST_KEYS = {"version", "functionTimeout"}
HOST_IGNORED = {"extensionBundle", "logging", "extensions", "healthMonitor", "managedDependency",
                "concurrency", "aggregator", "retry", "singleton", "watchDirectories", "customHandler", "functions"}


def _timeout(value: Any) -> float | None:
    m = re.match(r"^(\d+):(\d{2}):(\d{2})$", str(value or ""))
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) if m else None


def parse(app_dir: Path, params: dict[str, str]) -> Plan:
    plan = Plan("azure", app_dir / "host.json")
    try:
        host = json.loads((app_dir / "host.json").read_text() or "{}")
    except (OSError, ValueError) as e:
        raise ManifestError(f"host.json: {e}") from None
    check_keys(host, "host.json", HOST_KEYS, HOST_IGNORED, plan.notes)
    timeout = _timeout(host.get("functionTimeout"))
    for fj in sorted(app_dir.glob("*/function.json")):
        folder = fj.parent.name
        where = f"{folder}/function.json"
        try:
            conf = json.loads(fj.read_text())
        except ValueError as e:
            raise ManifestError(f"{where}: not valid JSON: {e}") from None
        check_keys(conf, where, FN_KEYS, FN_IGNORED, plan.notes)
        pf = PlannedFunction(polyfn_name(folder, where), app_dir, {}, where)
        pf.spec["name"] = pf.name
        plan.functions.append(pf)
        if conf.get("disabled") is True:
            pf.error = f"{where}: disabled"
            continue
        script = str(conf.get("scriptFile") or "__init__.py")
        if script.endswith(".py"):
            lang = "python"
            if not folder.isidentifier():
                pf.error = f"{where}: folder {folder!r} is not a Python module name, so it cannot be imported"
                continue
            mod = folder if Path(script).name == "__init__.py" else f"{folder}.{Path(script).stem}"
            pf.spec["handler"] = f"{mod}.{conf.get('entryPoint') or 'main'}"
        elif script.endswith((".js", ".mjs", ".cjs")):
            lang = "node"
        else:
            pf.error = f"{where}.scriptFile: {script!r}: polyfn runs Python and JavaScript functions"
            continue
        target("azure", lang, script, pf)
        if timeout:
            pf.spec["timeout"] = float(timeout)
        for i, b in enumerate(conf.get("bindings") or []):
            w = f"{where}.bindings[{i}]"
            t, direction = b.get("type"), b.get("direction")
            if t == "httpTrigger":
                pf.triggers.append(TriggerDecl("http", {"methods": b.get("methods"), "route": b.get("route"),
                                                        "auth_level": b.get("authLevel")}, w))
            elif t == "timerTrigger":
                try:
                    sched = schedules.azure(str(b.get("schedule", "")))
                except ValueError as e:
                    raise ManifestError(f"{w}.schedule: {e}") from None
                pf.triggers.append(TriggerDecl("cron", sched, w))
            elif t == "blobTrigger":
                container, _, pattern = str(b.get("path", "")).partition("/")
                pf.triggers.append(TriggerDecl("storage", {"bucket": container, "filter": pattern,
                                                           "events": ["created"]}, w))
            elif t in ("queueTrigger", "serviceBusTrigger"):
                pf.triggers.append(TriggerDecl("queue", {"queue": b.get("queueName") or b.get("topicName")}, w))
            elif t == "http" and direction == "out":
                continue
            else:
                pf.notes.append(f"{w}: {t} ({direction}) bindings are not supported by polyfn; skipped")
    if not plan.functions:
        from polyfn.manifests import azure_csharp  # a C# project declares its functions in code

        if azure_csharp.parse(app_dir, plan, timeout):
            return plan
        raise ManifestError(f"{app_dir}: no */function.json next to host.json (nor C# [FunctionName] methods)")
    return plan
