"""AWS SAM `template.yaml`: every `AWS::Serverless::Function` (and `AWS::Lambda::Function` with inline
`ZipFile` code) becomes a polyfn function; `Globals.Function` supplies defaults.

`CodeUri` (a folder next to the template) or `InlineCode` is the code; `Handler`, `Runtime`, `MemorySize`,
`Timeout`, `Environment.Variables` map to the spec. Events: `Api`/`HttpApi` → HTTP, `Schedule`/
`ScheduleV2` → cron, `S3` → storage, `SQS` → queue. Intrinsics are resolved by `cfn.Resolver`; one that
cannot be resolved is an error naming it and its location. Other resources are reported as not created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyfn.manifests import schedules
from polyfn.manifests.cfn import Intrinsic, Resolver
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

TOP_KEYS = {"AWSTemplateFormatVersion", "Transform", "Globals", "Parameters", "Resources"}
TOP_IGNORED = {"Description", "Metadata", "Outputs", "Conditions", "Mappings", "Rules"}
PROP_KEYS = {"CodeUri", "InlineCode", "Handler", "Runtime", "MemorySize", "Timeout", "Environment", "Events",
             "FunctionName", "PackageType"}
PROP_IGNORED = {"Description", "Role", "Policies", "Tags", "Architectures", "Tracing", "Layers", "VpcConfig",
                "AutoPublishAlias", "DeploymentPreference", "ReservedConcurrentExecutions",
                "ProvisionedConcurrencyConfig", "DeadLetterQueue", "EventInvokeConfig", "KmsKeyArn",
                "PermissionsBoundary", "EphemeralStorage", "FunctionUrlConfig", "LoggingConfig", "SnapStart",
                "RuntimeManagementConfig", "AssumeRolePolicyDocument", "CodeSigningConfigArn", "FileSystemConfigs",
                "RolePath", "AutoPublishCodeSha256", "VersionDescription", "Condition", "RecursiveLoop"}
GLOBAL_KEYS = {"Runtime", "Handler", "MemorySize", "Timeout", "Environment", "CodeUri"}
FN_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


def parse(doc: dict[str, Any], path: Path, params: dict[str, str]) -> Plan:
    plan = Plan("sam", path)
    check_keys(doc, "template", TOP_KEYS, TOP_IGNORED, plan.notes)
    resources = doc.get("Resources") or {}
    if not isinstance(resources, dict):
        raise ManifestError("Resources: expected a mapping")
    logical: dict[str, str] = {}
    for rid, res in resources.items():
        if isinstance(res, dict) and res.get("Type") in FN_TYPES:
            fname = (res.get("Properties") or {}).get("FunctionName")
            logical[rid] = polyfn_name(fname if isinstance(fname, str) else rid, f"Resources.{rid}")
    r = Resolver(doc.get("Parameters") or {}, params, logical)
    glob = (doc.get("Globals") or {}).get("Function") or {}
    check_keys(glob, "Globals.Function", GLOBAL_KEYS, PROP_IGNORED, plan.notes)
    glob = {k: v for k, v in glob.items() if k in GLOBAL_KEYS}
    for rid, res in resources.items():
        where = f"Resources.{rid}"
        if not isinstance(res, dict):
            raise ManifestError(f"{where}: expected a mapping")
        if res.get("Type") not in FN_TYPES:
            plan.notes.append(f"{where}: {res.get('Type')} is not created by polyfn (only functions are)")
            continue
        raw = dict(res.get("Properties") or {})
        if res["Type"] == "AWS::Lambda::Function":
            code = raw.pop("Code", None) or {}
            if "ZipFile" not in code:
                raise ManifestError(f"{where}.Properties.Code: only inline ZipFile code can be deployed")
            raw["InlineCode"] = code["ZipFile"]
        check_keys(raw, f"{where}.Properties", PROP_KEYS, PROP_IGNORED, plan.notes)
        events = raw.get("Events") or {}
        merged = {**glob, **{k: v for k, v in raw.items() if k in PROP_KEYS and k != "Events"}}
        props = r.value(merged, f"{where}.Properties")
        pf = PlannedFunction(logical[rid], None, {"name": logical[rid]}, where)
        plan.functions.append(pf)
        if props.get("PackageType", "Zip") != "Zip":
            pf.error = f"{where}.Properties.PackageType: Image functions cannot run on polyfn (Zip only)"
            continue
        rt = str(props.get("Runtime") or "")
        lang = language(rt)
        if lang is None:
            pf.error = f"{where}.Properties.Runtime: {rt or '(none)'!r} is not supported (python3.x, nodejs*.x)"
            continue
        target("aws", lang, rt, pf)
        if "Handler" not in props:
            raise ManifestError(f"{where}.Properties.Handler is required")
        pf.spec["handler"] = str(props["Handler"])
        pf.spec["timeout"] = float(props.get("Timeout", 3))
        pf.spec["memory"] = int(props.get("MemorySize", 128))
        env = env_map((props.get("Environment") or {}).get("Variables"), f"{where}.Properties.Environment.Variables")
        if env:
            pf.spec["env"] = env
        if "InlineCode" in props:
            module = pf.spec["handler"].rpartition(".")[0].replace(".", "/") or "index"
            pf.files = {module + (".py" if lang == "python" else ".js"): str(props["InlineCode"]).encode()}
        else:
            uri = props.get("CodeUri", ".")
            if isinstance(uri, dict) or str(uri).startswith("s3://"):
                raise ManifestError(f"{where}.Properties.CodeUri: {uri!r} is not a local folder")
            d = (path.parent / str(uri)).resolve()
            if not d.is_dir():
                raise ManifestError(f"{where}.Properties.CodeUri: {d} is not a directory")
            pf.code_dir = d
        _events(pf, events, f"{where}.Properties.Events", r)
        if not any(t.kind == "http" for t in pf.triggers):
            pf.triggers.append(TriggerDecl("http", {}, where))
    if not plan.functions:
        raise ManifestError("template: no AWS::Serverless::Function resources")
    return plan


def _ref_name(v: Any) -> Any:
    """A bucket or queue given as `!Ref X` / `!GetAtt X.Arn`: its logical id names the polyfn resource."""
    if isinstance(v, Intrinsic) and v.name in ("Ref", "GetAtt"):
        return v.arg if isinstance(v.arg, str) else v.arg[0]
    return v


def _events(pf: PlannedFunction, events: Any, where: str, r: Resolver) -> None:
    if not isinstance(events, dict):
        raise ManifestError(f"{where}: expected a mapping of event name → event")
    for name, ev in events.items():
        w = f"{where}.{name}"
        if not isinstance(ev, dict) or "Type" not in ev:
            raise ManifestError(f"{w}: each event needs a Type")
        kind, raw = ev["Type"], ev.get("Properties") or {}
        if kind in ("Api", "HttpApi"):
            pf.triggers.append(TriggerDecl("http", {"path": raw.get("Path"), "method": raw.get("Method")}, w))
        elif kind in ("Schedule", "ScheduleV2"):
            p = r.value(raw, w + ".Properties")
            try:
                sched = schedules.aws(str(p.get("Schedule") or p.get("ScheduleExpression") or ""))
            except ValueError as e:
                raise ManifestError(f"{w}.Properties.Schedule: {e}") from None
            if "Input" in p:
                sched["payload"] = p["Input"]
            if p.get("Enabled") is False or p.get("State") == "DISABLED":
                pf.notes.append(f"{w}: disabled in the template, not created")
                continue
            pf.triggers.append(TriggerDecl("cron", sched, w))
        elif kind == "S3":
            evs = raw.get("Events")
            pf.triggers.append(TriggerDecl("storage", {"bucket": _ref_name(raw.get("Bucket")),
                                                       "events": evs if isinstance(evs, list) else [evs],
                                                       "filter": raw.get("Filter")}, w))
        elif kind == "SQS":
            pf.triggers.append(TriggerDecl("queue", {"queue": _ref_name(raw.get("Queue")),
                                                     "batch_size": raw.get("BatchSize", 10)}, w))
        else:
            pf.notes.append(f"{w}: {kind} events are not supported by polyfn; skipped")
