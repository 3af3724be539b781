"""Alibaba Cloud Serverless Devs `s.yaml`: edition 1.0.0 (`services.<n>.props.function` + `triggers`, the
`fc` component) and edition 3.0.0 (`resources.<n>.props` with `functionName`, `code`, the `fc3` component).

`codeUri`/`code` is the code folder, `runtime`/`handler`/`memorySize`/`timeout`/`environmentVariables` map to
the spec; triggers: `http` → HTTP, `timer` → cron (`@every`, 6-field cron, `CRON_TZ=`), `oss` → storage,
`mns_topic` → queue. `${vars.x}` and `${env.X}` / `${env(X)}` are resolved (also from `--param`).
"""

from __future__ import annotations

import os
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
    env_map,
    polyfn_name,
    target,
)
from polyfn.manifests.runtimes import language

TOP_IGNORED = {"access", "name", "template", "flow", "actions", "extend"}
FN_KEYS = {"name", "functionName", "runtime", "handler", "codeUri", "code", "memorySize", "timeout",
           "environmentVariables", "triggers", "region", "service", "function"}
FN_IGNORED = {"description", "instanceConcurrency", "initializer", "initializationTimeout", "layers", "role",
              "logConfig", "vpcConfig", "nasConfig", "internetAccess", "cpu", "diskSize", "instanceType",
              "customContainerConfig", "customRuntimeConfig", "asyncInvokeConfig", "tracingConfig",
              "instanceLifecycleConfig", "gpuConfig", "customDomain", "customDomains", "concurrencyConfig",
              "provisionConfig", "ossMountConfig", "policies", "tags", "artifact", "caPort", "sessionAffinity"}


def _vars(v: Any, doc: dict[str, Any], params: dict[str, str], where: str) -> Any:
    if isinstance(v, dict):
        return {k: _vars(x, doc, params, f"{where}.{k}") for k, x in v.items()}
    if isinstance(v, list):
        return [_vars(x, doc, params, f"{where}[{i}]") for i, x in enumerate(v)]
    if not isinstance(v, str):
        return v

    def one(m: re.Match[str]) -> str:
        expr = m[1].strip()
        em = re.match(r"^env(?:\.|\(\s*['\"]?)(\w+)", expr)
        if em:
            val = params.get(em[1], os.environ.get(em[1]))
        elif expr.startswith("vars."):
            val = params.get(expr[5:], (doc.get("vars") or {}).get(expr[5:]))
        else:
            val = params.get(expr)
        if val is None:
            raise ManifestError(f"{where}: cannot resolve ${{{expr}}}: pass --param NAME=VALUE")
        return str(val)

    return re.sub(r"\$\{([^{}]+)\}", one, v)


def parse(doc: dict[str, Any], path: Path, params: dict[str, str]) -> Plan:
    plan = Plan("aliyun", path)
    edition = str(doc.get("edition", ""))
    v3 = edition.startswith("3")
    group = "resources" if v3 else "services"
    check_keys(doc, "s.yaml", {"edition", group, "vars"}, TOP_IGNORED, plan.notes)
    for key, svc in (doc.get(group) or {}).items():
        where = f"{group}.{key}"
        check_keys(svc, where, {"component", "props"}, {"actions", "access", "extend"}, plan.notes)
        props = _vars(svc.get("props") or {}, doc, params, f"{where}.props")
        fn = props if v3 else {**(props.get("function") or {}), "triggers": props.get("triggers")}
        fw = f"{where}.props" if v3 else f"{where}.props.function"
        if not v3:
            check_keys(props, f"{where}.props", {"function", "triggers", "region", "service"},
                       {"customDomains", "customDomain"}, plan.notes)
        check_keys(fn, fw, FN_KEYS, FN_IGNORED, plan.notes)
        name = fn.get("functionName") or fn.get("name") or key
        pf = PlannedFunction(polyfn_name(str(name), fw), None, {}, fw)
        pf.spec["name"] = pf.name
        plan.functions.append(pf)
        rt = str(fn.get("runtime") or "")
        lang = language(rt)
        if lang is None:
            pf.error = f"{fw}.runtime: {rt or '(none)'!r} is not supported (python3.x, nodejs*)"
            continue
        target("aliyun", lang, rt, pf)
        code = fn.get("code") if v3 else fn.get("codeUri")
        if isinstance(code, dict):
            code = code.get("src")
        d = (path.parent / str(code or ".")).resolve()
        if not d.is_dir():
            raise ManifestError(f"{fw}.{'code' if v3 else 'codeUri'}: {d} is not a directory")
        pf.code_dir = d
        if fn.get("handler"):
            pf.spec["handler"] = str(fn["handler"])
        if "memorySize" in fn:
            pf.spec["memory"] = int(fn["memorySize"])
        pf.spec["timeout"] = float(fn.get("timeout", 3))
        env = env_map(fn.get("environmentVariables"), f"{fw}.environmentVariables")
        if env:
            pf.spec["env"] = env
        for i, t in enumerate(fn.get("triggers") or []):
            w = f"{fw}.triggers[{i}]"
            kind = t.get("triggerType") or t.get("type")
            cfg = t.get("triggerConfig") or t.get("config") or {}
            if kind == "http":
                pf.triggers.append(TriggerDecl("http", {"methods": cfg.get("methods"), "auth": cfg.get("authType")}, w))
            elif kind == "timer":
                try:
                    sched = schedules.aliyun(str(cfg.get("cronExpression", "")))
                except ValueError as e:
                    raise ManifestError(f"{w}.cronExpression: {e}") from None
                if "payload" in cfg:
                    sched["payload"] = cfg["payload"]
                if cfg.get("enable") is False:
                    pf.notes.append(f"{w}: disabled in the file, not created")
                    continue
                pf.triggers.append(TriggerDecl("cron", sched, w))
            elif kind == "oss":
                bucket = t.get("sourceArn", "").rsplit(":", 1)[-1] or cfg.get("bucketName")
                pf.triggers.append(TriggerDecl("storage", {"bucket": bucket, "events": cfg.get("events"),
                                                           "filter": cfg.get("filter")}, w))
            elif kind in ("mns_topic", "mns"):
                pf.triggers.append(TriggerDecl("queue", {"queue": cfg.get("topicName") or t.get("sourceArn")}, w))
            else:
                pf.notes.append(f"{w}: {kind} triggers are not supported by polyfn; skipped")
        if not any(t.kind == "http" for t in pf.triggers):
            pf.triggers.append(TriggerDecl("http", {}, fw))
    if not plan.functions:
        raise ManifestError(f"s.yaml: no functions under {group}")
    return plan
