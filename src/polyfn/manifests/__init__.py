"""Definition files of other platforms → a `Plan` of polyfn functions and triggers (`polyfn deploy -f FILE`).

Formats: OpenFaaS `stack.yml`, Serverless Framework `serverless.yml` (aws, tencent), AWS SAM `template.yaml`,
Azure Functions app folders (`host.json` + `*/function.json`), Alibaba Serverless Devs `s.yaml`, and
polyfn's own file (`polyfn: 1`, e.g. `scenario.yml`).
`load(path)` detects the format from the file name and content and dispatches to one module per format.
Parsing is client-side and pure (no server needed), so `--dry-run` shows the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyfn.manifests.model import ManifestError, Plan, PlannedFunction, TriggerDecl

FORMATS = ("openfaas", "serverless", "sam", "azure", "aliyun", "polyfn")
CANDIDATES = ("stack.yml", "stack.yaml", "serverless.yml", "serverless.yaml", "template.yaml", "template.yml",
              "s.yaml", "s.yml", "host.json", "scenario.yml", "polyfn.yml")

__all__ = ["FORMATS", "ManifestError", "Plan", "PlannedFunction", "TriggerDecl", "detect", "load"]


def detect(path: Path, doc: Any) -> str:
    """Which format `doc` (parsed from `path`) is; ManifestError listing what was looked for."""
    if path.name == "host.json":
        return "azure"
    if isinstance(doc, dict):
        if "polyfn" in doc:
            return "polyfn"
        if str((doc.get("provider") or {}).get("name", "")) == "openfaas" or (
                path.stem == "stack" and "functions" in doc):
            return "openfaas"
        if "AWSTemplateFormatVersion" in doc or "Transform" in doc or (
                isinstance(doc.get("Resources"), dict) and "Resources" in doc):
            return "sam"
        if "service" in doc and "functions" in doc:
            return "serverless"
        if "edition" in doc and ("services" in doc or "resources" in doc):
            return "aliyun"
    raise ManifestError(
        f"{path}: cannot tell the format: expected an OpenFaaS stack.yml (provider.name: openfaas), a "
        "serverless.yml (service + functions), a SAM template (AWSTemplateFormatVersion/Transform/Resources), "
        "an Azure app folder (host.json), a Serverless Devs s.yaml (edition + services/resources) or polyfn's own "
        "file (polyfn: 1)")


def find_file(path: Path) -> Path:
    """A directory stands for the one definition file in it."""
    if not path.is_dir():
        return path
    for name in CANDIDATES:
        if (path / name).is_file():
            return path / name
    raise ManifestError(f"{path}: no definition file found (looked for {', '.join(CANDIDATES)})")


def load(path: Path, params: dict[str, str] | None = None) -> Plan:
    from polyfn.manifests import aliyun, azure, cfn, openfaas_stack, polyfn_file, sam, serverless

    params = params or {}
    path = find_file(path.expanduser().resolve())
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(f"cannot read {path}: {e}") from None
    if path.name == "host.json":
        return azure.parse(path.parent, params)
    doc = cfn.load(text, path.name)
    fmt = detect(path, doc)
    parser = {"openfaas": openfaas_stack.parse, "serverless": serverless.parse, "sam": sam.parse,
              "aliyun": aliyun.parse, "polyfn": polyfn_file.parse}[fmt]
    return parser(doc, path, params)
