"""Plain Kubernetes manifests for people without Helm, rendered from deploy/helm/polyfn by Helm's own engine.

    python deploy/manifests/generate.py          # rewrites single.yaml and cluster.yaml from the *.values.yaml
    python deploy/manifests/generate.py --check  # exit 1 when a committed manifest differs from the chart

Rendering uses the `helm-python-sdk` package (Helm's Go SDK in a shared library, no `helm` binary needed); it is
in polyfn's test extras. The values name Secrets the user makes, so no key is ever written into these files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "helm" / "polyfn"
RELEASE, NAMESPACE = "polyfn", "polyfn"
HEADER = ("# Generated from deploy/helm/polyfn with {values} by deploy/manifests/generate.py: edit the chart or the\n"
          "# values file and run it again, not this file. Apply with `kubectl apply -n polyfn -f {name}`.\n")


def render(values_file: Path) -> str:
    """The chart's manifests for one values file, in a stable order (NOTES.txt left out)."""
    import helm_python as helm

    values = yaml.safe_load(values_file.read_text()) or {}
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = [text.strip() for path, text in sorted(out.items()) if path.endswith(".yaml") and text.strip()]
    name = values_file.name.replace(".values.yaml", ".yaml")
    return HEADER.format(values=values_file.name, name=name) + "".join(f"---\n{d}\n" for d in docs)


def targets() -> dict[Path, Path]:
    return {v: HERE / v.name.replace(".values.yaml", ".yaml") for v in sorted(HERE.glob("*.values.yaml"))}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for values, manifest in targets().items():
        text = render(values)
        if check:
            if not manifest.exists() or manifest.read_text() != text:
                stale.append(manifest.name)
        else:
            manifest.write_text(text)
            print(f"wrote {manifest.relative_to(HERE.parents[1])}")
    if stale:
        print(f"out of date with the chart: {', '.join(stale)} (run python deploy/manifests/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
