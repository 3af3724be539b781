"""deploy/knative.py: a Knative Service manifest's port named h2c is polyfn's `h2c: true`."""

from __future__ import annotations

import pytest

from polyfn.deploy.knative import h2c_manifest
from polyfn.model import FunctionSpec, SpecError, validate_spec

SERVICE = """apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: f}
spec:
  template:
    spec:
      containers:
        - image: x
          ports: [{name: %s, containerPort: 8080}]
"""


@pytest.mark.parametrize("files, found", [
    ({"service.yaml": SERVICE % "h2c"}, "service.yaml"),
    ({"k8s.yml": "---\nkind: ConfigMap\n---\n" + SERVICE % "h2c"}, "k8s.yml"),  # (several documents)
    ({"service.yaml": SERVICE % "http1"}, None),  # Knative's other name: HTTP/1.1
    ({"service.yaml": (SERVICE % "h2c").replace("serving.knative.dev", "apps")}, None),  # not Knative's
    ({"deploy/service.yaml": SERVICE % "h2c"}, None),  # (top level only)
    ({"service.yaml": "apiVersion: serving.knative.dev/v1\n: : bad"}, None),
    ({"service.yaml": "apiVersion: serving.knative.dev/v1\nkind: Service\nspec: 3\n"}, None),
])
def test_a_port_named_h2c(files: dict[str, str], found: str | None) -> None:
    assert h2c_manifest({k: v.encode() for k, v in files.items()}) == found


def test_h2c_is_for_the_http_runtime_only() -> None:
    validate_spec(FunctionSpec(name="f", runtime="http", handler="./server", h2c=True), 900, 4096, 100)
    with pytest.raises(SpecError, match="h2c=true is for the http runtime"):
        validate_spec(FunctionSpec(name="f", runtime="python", handler="main.handler", h2c=True), 900, 4096, 100)
