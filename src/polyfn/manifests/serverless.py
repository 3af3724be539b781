"""Serverless Framework `serverless.yml`, with the `aws` and `tencent` (serverless-tencent-scf) providers.

Code is the service folder (the file's directory). `provider.runtime` / `functions.<n>.runtime` pick the
language, the provider the flavor; `memorySize`, `timeout`, `environment` (Tencent: `environment.variables`)
map to spec fields. Events: `http`/`httpApi`/`apigw` → HTTP, `schedule`/`timer` → cron, `s3`/`cos` → storage,
`sqs`/`cmq` → queue. Serverless variables (`${self:...}`, `${opt:...}`, `${env:...}`) are resolved for
`self:` paths, `env:` (from `--param` then the environment), and `opt:stage`/`opt:region` defaults.
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

TOP_KEYS = {"service", "provider", "functions"}
TOP_IGNORED = {"frameworkVersion", "plugins", "package", "custom", "resources", "useDotenv", "variablesResolutionMode",
               "configValidationMode", "app", "org", "params", "layers", "outputs", "deprecationNotificationMode"}
PROVIDER_KEYS = {"name", "runtime", "memorySize", "timeout", "environment"}
PROVIDER_IGNORED = {"stage", "region", "credentials", "iam", "iamRoleStatements", "profile", "deploymentBucket",
                    "apiGateway", "httpApi", "logRetentionInDays", "tags", "stackTags", "architecture", "versionFunctions",
                    "tracing", "vpc", "logs", "role", "lambdaHashingVersion", "deploymentMethod", "layers",
                    "ecr", "kmsKeyArn", "eventBridge", "stackName", "apiName", "websocketsApiName", "cfnRole",
                    "memory", "namespace", "vpcConfig", "cls"}
FN_KEYS = {"handler", "runtime", "memorySize", "timeout", "environment", "events", "name"}
FN_IGNORED = {"description", "package", "layers", "tags", "role", "vpc", "reservedConcurrency", "provisionedConcurrency",
              "tracing", "architecture", "url", "destinations", "maximumRetryAttempts", "ephemeralStorageSize",
              "logRetentionInDays", "onError", "kmsKeyArn", "condition", "dependsOn", "iamRoleStatements",
              "iamRoleStatementsName", "disableLogs", "logs", "fileSystemConfig", "snapStart", "image", "vpcConfig",
              "namespace", "cls", "eip", "publicAccess", "installDependency", "asyncRunEnable"}
_VAR = re.compile(r"\$\{([^{}]+)\}")


class _Vars:
    def __init__(self, doc: dict[str, Any], params: dict[str, str]):
        self.doc = doc
        self.params = params

    def resolve(self, v: Any, where: str) -> Any:
        if isinstance(v, dict):
            return {k: self.resolve(x, f"{where}.{k}") for k, x in v.items()}
        if isinstance(v, list):
            return [self.resolve(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, str):
            return v
        for _ in range(10):
            m = _VAR.search(v)
            if not m:
                return v
            value = self._one(m[1], where)
            if m.span() == (0, len(v)) and not isinstance(value, str):
                return value
            v = v[: m.start()] + str(value) + v[m.end():]
        raise ManifestError(f"{where}: variables nest too deeply")

    def _one(self, expr: str, where: str) -> Any:
        expr, _, default = (p.strip() for p in expr.partition(","))
        default = default.strip("'\"") if default else None
        kind, _, path = expr.partition(":")
        if kind == "self":
            cur: Any = self.doc
            for part in path.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    cur = None
                    break
                cur = cur[part]
            if cur is not None:
                return cur
        elif kind == "env":
            v = self.params.get(path, os.environ.get(path))
            if v is not None:
                return v
        elif kind == "opt":
            if path in self.params:
                return self.params[path]
            if path in ("stage", "region"):
                return (self.doc.get("provider") or {}).get(path) or {"stage": "dev", "region": "us-east-1"}[path]
        elif kind == "sls" and path == "instanceId":
            return "polyfn"
        if default is not None:
            return default
        raise ManifestError(f"{where}: cannot resolve variable ${{{expr}}}: pass --param "
                            f"{path or expr}=VALUE (self:, env:, opt: and defaults are supported)")


def _events(pf: PlannedFunction, events: Any, where: str, provider: str) -> None:
    if not isinstance(events, list):
        raise ManifestError(f"{where}: events must be a list")
    for i, ev in enumerate(events):
        w = f"{where}[{i}]"
        if not isinstance(ev, dict) or len(ev) != 1:
            raise ManifestError(f"{w}: each event is a mapping with one key (its type)")
        (kind, cfg), = ev.items()
        w = f"{w}.{kind}"
        if kind in ("http", "httpApi", "apigw"):
            pf.triggers.append(TriggerDecl("http", cfg if isinstance(cfg, dict) else {"route": cfg}, w))
        elif kind == "schedule":
            exprs: Any = cfg.get("rate") if isinstance(cfg, dict) else cfg
            for expr in exprs if isinstance(exprs, list) else [exprs]:
                try:
                    sched = schedules.aws(str(expr))
                except ValueError as e:
                    raise ManifestError(f"{w}: {e}") from None
                if isinstance(cfg, dict) and "input" in cfg:
                    sched["payload"] = cfg["input"]
                if isinstance(cfg, dict) and cfg.get("enabled") is False:
                    pf.notes.append(f"{w}: disabled in the file, not created")
                    continue
                pf.triggers.append(TriggerDecl("cron", sched, w))
        elif kind == "timer":
            p = (cfg or {}).get("parameters") or {}
            try:
                sched = schedules.tencent(str(p.get("cronExpression", "")))
            except ValueError:
                try:
                    sched = schedules.cron5(str(p.get("cronExpression", "")))
                except ValueError as e:
                    raise ManifestError(f"{w}.parameters.cronExpression: {e}") from None
            if "argument" in p:
                sched["payload"] = p["argument"]
            pf.triggers.append(TriggerDecl("cron", sched, w))
        elif kind == "s3":
            c = cfg if isinstance(cfg, dict) else {"bucket": cfg}
            pf.triggers.append(TriggerDecl("storage", {"bucket": c.get("bucket"), "events": [c.get("event", "s3:ObjectCreated:*")],
                                                       "rules": c.get("rules", [])}, w))
        elif kind == "cos":
            p = (cfg or {}).get("parameters") or {}
            pf.triggers.append(TriggerDecl("storage", {"bucket": p.get("bucket"), "events": [p.get("events")],
                                                       "filter": p.get("filter")}, w))
        elif kind in ("sqs", "cmq"):
            c = cfg if isinstance(cfg, dict) else {"arn": cfg}
            name = c.get("arn") or (c.get("parameters") or {}).get("name")
            pf.triggers.append(TriggerDecl("queue", {"queue": name, "batch_size": c.get("batchSize", 1)}, w))
        else:
            pf.notes.append(f"{w}: {kind} events are not supported by polyfn; skipped")


def parse(doc: dict[str, Any], path: Path, params: dict[str, str]) -> Plan:
    plan = Plan("serverless", path)
    doc = _Vars(doc, params).resolve(doc, "serverless.yml")
    check_keys(doc, "serverless.yml", TOP_KEYS, TOP_IGNORED, plan.notes)
    provider = doc.get("provider") or {}
    check_keys(provider, "provider", PROVIDER_KEYS, PROVIDER_IGNORED, plan.notes)
    pname = str(provider.get("name", "aws"))
    if pname not in ("aws", "tencent"):
        raise ManifestError(f"provider.name: {pname!r} is not supported (aws, tencent)")
    flavor = "aws" if pname == "aws" else "tencent"
    for key, f in (doc.get("functions") or {}).items():
        where = f"functions.{key}"
        check_keys(f, where, FN_KEYS, FN_IGNORED, plan.notes)
        pf = PlannedFunction(polyfn_name(str(f.get("name") or key), where), path.parent, {}, where)
        pf.spec["name"] = pf.name
        plan.functions.append(pf)
        rt = str(f.get("runtime") or provider.get("runtime") or "")
        lang = language(rt)
        if lang is None:
            pf.error = f"{where}: runtime {rt or '(none)'!r} is not supported: polyfn runs python3.x and nodejs runtimes"
            continue
        target(flavor, lang, rt, pf)
        if "handler" not in f:
            raise ManifestError(f"{where}.handler is required (e.g. handler.hello)")
        pf.spec["handler"] = str(f["handler"])
        for field, key2 in (("memory", "memorySize"), ("timeout", "timeout")):
            v = f.get(key2, provider.get(key2))
            if v is not None:
                pf.spec[field] = int(v) if field == "memory" else float(v)
        if pname == "aws":
            pf.spec.setdefault("timeout", 6.0)  # the Serverless Framework's default
        env = {}
        for src, w in ((provider.get("environment"), "provider.environment"), (f.get("environment"), f"{where}.environment")):
            if pname == "tencent" and isinstance(src, dict) and "variables" in src:
                src = src["variables"]
            env.update(env_map(src, w))
        if env:
            pf.spec["env"] = env
        _events(pf, f.get("events") or [], f"{where}.events", pname)
        if not any(t.kind == "http" for t in pf.triggers):
            pf.triggers.append(TriggerDecl("http", {}, where))
    if not plan.functions:
        raise ManifestError("serverless.yml: no functions")
    return plan
