"""The Helm chart renders with Helm's own engine and every manifest is valid Kubernetes; impossible values are refused.

Rendering goes through `helm-python-sdk` (Helm v4's Go SDK as a shared library: the same template engine, sprig
functions and values.schema.json check as `helm template`; Debian has no `helm` package). Each rendered object is
validated, strictly (unknown fields are errors), against the Kubernetes OpenAPI schemas shipped by
`kubernetes-validate`, for the oldest and the newest Kubernetes version the chart claims. The plain manifests in
deploy/manifests must be what the chart renders today.
"""

from __future__ import annotations

import base64
import importlib.util
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "polyfn"
KUBE_VERSIONS = ("1.25.0", "1.33.0")  # Chart.yaml's kubeVersion floor, and a recent release

for _module in ("helm_python", "kubernetes_validate"):
    if importlib.util.find_spec(_module) is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{_module} is required under CI=true (pip install -e '.[test]')")
        pytest.skip(f"{_module} is not installed (pip install -e '.[test]')", allow_module_level=True)

import helm_python as helm  # noqa: E402
import kubernetes_validate  # noqa: E402

CLUSTER: dict[str, Any] = {
    "cluster": {"enabled": True}, "replicaCount": 3,
    "database": {"url": "postgresql+asyncpg://polyfn:pw@db:5432/polyfn"},
    "queue": {"url": "nats://nats:4222"},
    "artifacts": {"url": "s3://polyfn-code/prod", "endpoint": "http://minio:9000",
                  "accessKeyId": "AK", "secretAccessKey": "SK"},
    "storage": {"backend": "s3", "upstream": {"url": "http://minio:9000", "accessKeyId": "AK2", "secretAccessKey": "SK2"}},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """kind -> the objects of that kind the chart renders for `values`."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name="demo", namespace="fn")
    objects: dict[str, list[dict[str, Any]]] = {}
    for path, text in out.items():
        if path.endswith(".yaml"):
            for doc in yaml.safe_load_all(text):
                if doc:
                    objects.setdefault(doc["kind"], []).append(doc)
    return objects


def validate(objects: dict[str, list[dict[str, Any]]]) -> None:
    for kind, docs in objects.items():
        for doc in docs:
            if kind == "ServiceMonitor":  # a CRD: no schema in kubernetes-validate, checked field by field below
                continue
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def container(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (deployment,) = objects["Deployment"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


def test_the_validator_refuses_a_planted_mistake() -> None:
    """The check below can fail: an unknown field and a wrong type in a rendered Deployment are caught."""
    objects = render({})
    bad = objects["Deployment"][0]
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)
    bad = render({})["Deployment"][0]
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)


def test_one_node_by_default() -> None:
    objects = render({})
    validate(objects)
    assert sorted(objects) == ["Deployment", "Secret", "Service"]
    (deployment,) = objects["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"  # SQLite: one owner at a time
    c = container(objects)
    assert c["args"] == ["serve"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # functions must not find an API token
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + int(env(objects)["POLYFN_DRAIN_TIMEOUT"])
    assert c["securityContext"]["privileged"] is True
    e = env(objects)
    assert e["POLYFN_HOST"] == "0.0.0.0" and e["POLYFN_DATA_DIR"] == "/var/lib/polyfn"
    assert "POLYFN_DATABASE_URL" not in e and e["POLYFN_STORAGE_BACKEND"] == "local"
    assert {p["name"] for p in objects["Service"][0]["spec"]["ports"]} == {"http", "storage"}


def test_generated_keys_are_usable_by_polyfn() -> None:
    """Left empty, the keys are made by the chart: an admin key, and a node key that is a valid Fernet key."""
    from cryptography.fernet import Fernet

    (secret,) = render({})["Secret"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["admin.key"].startswith("pfk_") and len(data["admin.key"]) > 40
    box = Fernet(data["node.key"].encode())
    assert box.decrypt(box.encrypt(b"x")) == b"x"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    init = render({})["Deployment"][0]["spec"]["template"]["spec"]["initContainers"][0]
    assert "admin.key" in init["command"][-1] and "node.key" in init["command"][-1]


def test_a_cluster() -> None:
    objects = render(merged(CLUSTER, {"metrics": {"serviceMonitor": {"enabled": True}}}))
    validate(objects)
    assert sorted(objects) == ["Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceMonitor"]
    (deployment,) = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert container(objects)["args"] == ["serve", "--cluster"]
    e = env(objects)
    assert e["POLYFN_QUEUE_URL"] == "nats://nats:4222" and e["POLYFN_ARTIFACTS_URL"] == "s3://polyfn-code/prod"
    assert e["POLYFN_DATABASE_URL"] == {"secretKeyRef": {"name": "demo-polyfn-settings", "key": "database-url"}}
    assert e["POLYFN_NODE_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    settings = next(s for s in objects["Secret"] if s["metadata"]["name"] == "demo-polyfn-settings")
    assert settings["stringData"]["database-url"] == CLUSTER["database"]["url"]
    assert settings["stringData"]["storage-secret-access-key"] == "SK2"
    (pdb,) = objects["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    (monitor,) = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_a_cluster_upgraded_whole_when_its_migrations_require_it() -> None:
    objects = render(merged(CLUSTER, {"cluster": {"updateStrategy": "Recreate"}}))
    validate(objects)
    assert objects["Deployment"][0]["spec"]["strategy"] == {"type": "Recreate"}


def test_an_autoscaled_cluster_with_secrets_of_its_own_and_an_unprivileged_sandbox() -> None:
    values = merged(CLUSTER, {
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
        "database": {"url": "", "existingSecret": "pg"},
        "artifacts": {"existingSecret": "s3", "accessKeyId": "", "secretAccessKey": ""},
        "storage": {"enabled": False},
        "keys": {"existingSecret": "polyfn-keys"},
        "sandbox": {"privileged": False, "disable": "cgroup"},
    })
    objects = render(values)
    validate(objects)
    assert "replicas" not in objects["Deployment"][0]["spec"]  # the HPA owns the count
    (hpa,) = objects["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "Secret" not in objects  # every credential is in the user's own Secrets
    e = env(objects)
    assert e["POLYFN_DATABASE_URL"] == {"secretKeyRef": {"name": "pg", "key": "database-url"}}
    assert e["POLYFN_ARTIFACTS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "s3"
    assert e["POLYFN_STORAGE_PORT"] == "0" and e["POLYFN_SANDBOX_DISABLE"] == "cgroup"
    sc = container(objects)["securityContext"]
    assert "privileged" not in sc and sc["capabilities"]["add"] == ["SYS_ADMIN", "SETUID", "SETGID"]
    volumes = objects["Deployment"][0]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "keys", "secret": {"secretName": "polyfn-keys", "defaultMode": 0o400}} in volumes


def test_one_node_with_a_volume() -> None:
    objects = render({"persistence": {"enabled": True, "size": "5Gi"}})
    validate(objects)
    (pvc,) = objects["PersistentVolumeClaim"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    volumes = objects["Deployment"][0]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "demo-polyfn-data"}} in volumes


IMPOSSIBLE = [
    ("a cluster without a shared database", {"cluster": {"enabled": True}, "database": {"url": ""}},
     "/database"),
    ("a cluster on SQLite", merged(CLUSTER, {"database": {"url": "sqlite+aiosqlite:///polyfn.db"}}), "/database/url"),
    ("a cluster without NATS", merged(CLUSTER, {"queue": {"url": ""}}), "/queue/url"),
    ("a cluster without an artifact bucket", merged(CLUSTER, {"artifacts": {"url": ""}}), "/artifacts/url"),
    ("a cluster on each pod's own storage directory", merged(CLUSTER, {"storage": {"backend": "local"}}),
     "/storage/backend"),
    ("a cluster on one node's volume", merged(CLUSTER, {"persistence": {"enabled": True}}), "/persistence/enabled"),
    ("three replicas of a one-node SQLite install", {"replicaCount": 3}, "/cluster/enabled"),
    ("autoscaling one node", {"autoscaling": {"enabled": True}}, "/cluster/enabled"),
    ("min above max replicas", merged(CLUSTER, {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}),
     "autoscaling.minReplicas (5) is above autoscaling.maxReplicas (2)"),
    ("zero replicas", {"replicaCount": 0}, "/replicaCount"),
    ("an S3 object store with no upstream", {"storage": {"backend": "s3"}}, "/storage/upstream"),
    ("a queue that is not NATS", merged(CLUSTER, {"queue": {"url": "redis://r:6379"}}), "/queue/url"),
    ("a node key that is not a Fernet key", {"keys": {"nodeKey": "hunter2"}}, "/keys/nodeKey"),
    ("an unknown sandbox layer", {"sandbox": {"disable": "seccomp,firewall"}}, "/sandbox/disable"),
    ("a misspelt key", {"replicas": 2}, "replicas"),
    ("an unknown update strategy", merged(CLUSTER, {"cluster": {"updateStrategy": "BlueGreen"}}), "/cluster/updateStrategy"),
]


@pytest.mark.parametrize(("why", "values", "says"), IMPOSSIBLE, ids=[i[0] for i in IMPOSSIBLE])
def test_impossible_values_are_refused_at_render_time(why: str, values: dict[str, Any], says: str) -> None:
    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as caught:
        render(values)
    assert says in str(caught.value), f"{why}: {caught.value}"


def test_helm_lint_finds_nothing_wrong() -> None:
    for values in ({}, CLUSTER):
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == [], report
        assert [m for m in report["messages"] if m["severity"] > 1] == [], report  # 1 = info (no icon)


def test_the_plain_manifests_are_the_chart_rendered_today() -> None:
    import runpy

    generate = runpy.run_path(str(REPO / "deploy" / "manifests" / "generate.py"))
    for values, manifest in generate["targets"]().items():
        assert manifest.read_text() == generate["render"](values), (
            f"{manifest.name} is out of date: run python deploy/manifests/generate.py")
        objects: dict[str, list[dict[str, Any]]] = {}
        for doc in yaml.safe_load_all(manifest.read_text()):
            objects.setdefault(doc["kind"], []).append(doc)
        validate(objects)
        assert "Secret" not in objects, "plain manifests must not carry keys: they name the user's Secrets"


def test_the_values_in_docs_operations_md_render() -> None:
    """Every `helm install` of docs/operations.md "Kubernetes (Helm)", with its values file or --set flags."""
    import re

    text = (REPO / "docs" / "operations.md").read_text().split("\n### Kubernetes (Helm)\n", 1)[1].split("\n### ", 1)[0]
    files = {m.group(1): yaml.safe_load(m.group(2)) for m in
             re.finditer(r"^```yaml\n# file: (\S+)\n(.*?)^```$", text, re.S | re.M)}
    installs = re.findall(r"^helm install polyfn deploy/helm/polyfn(.*)$", text, re.M)
    assert len(installs) >= 2 and files, installs
    for flags in installs:
        values: dict[str, Any] = {}
        args = flags.split()
        for flag, arg in itertools.pairwise(args):
            if flag == "-f":
                values = merged(values, files[arg])
            elif flag == "--set":
                key, raw = arg.split("=", 1)
                node: dict[str, Any] = values
                *path, last = key.split(".")
                for part in path:
                    node = node.setdefault(part, {})
                node[last] = yaml.safe_load(raw)
        objects = render(values)
        validate(objects)
        assert objects["Deployment"], flags
