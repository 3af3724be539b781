"""The examples a development node deploys at start (`polyfn serve --examples`, `make run`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from polyfn.bundled import bundle_dir
from polyfn.deploy import archive

log = logging.getLogger("polyfn.node")


async def deploy_examples(store: Any, deployer: Any) -> None:
    """Deploy every example under examples/seed and examples/native whose code changed since it was
    last deployed. A `polyfn.json` beside the code holds spec fields (e.g. the function's name). Runs as a
    background task after the node serves (`make run` answers /healthz while the Go example builds);
    each example is logged as it lands."""
    examples = bundle_dir("examples")
    dirs = [p for group in ("seed", "native") if examples and (examples / group).is_dir()
            for p in sorted((examples / group).iterdir()) if p.is_dir()]
    for d in dirs:
        files = {str(f.relative_to(d)): f.read_bytes() for f in d.rglob("*")
                 if f.is_file() and "__pycache__" not in f.parts and f.name != "README.md"}
        meta_file = d / "polyfn.json"
        fields = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        files.pop("polyfn.json", None)
        fields.setdefault("name", d.name)
        current = await store.get_function(fields["name"])
        if current is not None and current.code_sha256 == archive.digest(files):
            continue
        try:
            await deployer.deploy(fields, files)
            log.info("deployed example %s", fields["name"])
        except Exception as e:
            log.warning("example %s not deployed: %s", d.name, e)
