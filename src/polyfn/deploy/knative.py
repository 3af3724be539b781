"""What a Knative Service manifest beside the code says that polyfn has a field for.

Knative decides per container port how its queue-proxy speaks to the user's container: a port *named* `h2c`
means the program serves HTTP/2 without TLS (Knative's runtime contract, "Protocols and Ports"). A deploy of an
`http`-runtime program whose folder holds such a manifest (`service.yaml` and the like: `apiVersion:
serving.knative.dev/…`, `kind: Service`, `spec.template.spec.containers[].ports[] {name: h2c, containerPort: N}`)
gets `h2c: true`, as `--h2c` would give it (docs/streaming.md, "h2c"). Nothing else of the manifest is read.
"""

from __future__ import annotations

from typing import Any

import yaml


def _ports(doc: Any) -> list[Any]:
    if not isinstance(doc, dict) or doc.get("kind") != "Service" or not str(doc.get("apiVersion", "")).startswith(
            "serving.knative.dev/"):
        return []
    template = ((doc.get("spec") or {}).get("template") or {}) if isinstance(doc.get("spec"), dict) else {}
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    return [p for c in containers or [] if isinstance(c, dict) for p in c.get("ports") or [] if isinstance(p, dict)]


def h2c_manifest(files: dict[str, bytes]) -> str | None:
    """The top-level Knative Service manifest that names a container port `h2c`, if the code has one."""
    for name in sorted(files):
        if "/" in name or not name.endswith((".yaml", ".yml")) or b"serving.knative.dev" not in files[name]:
            continue
        try:
            docs = list(yaml.safe_load_all(files[name]))
        except yaml.YAMLError:
            continue
        if any(p.get("name") == "h2c" for doc in docs for p in _ports(doc)):
            return name
    return None
