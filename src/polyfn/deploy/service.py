"""Deploy: validated spec + checked code → an immutable revision that the function then serves.

Order matters: everything that can fail because of the user's input (spec, paths, syntax, handler,
dependencies) fails before the revision is recorded, so a bad deploy never replaces a good one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from polyfn import jsontext
from polyfn.config import Settings
from polyfn.deploy import (
    archive,
    build,
    build_dotnet,
    checks,
    deps,
    detect,
    detect_dotnet,
    detect_node,
    isolate,
    knative,
)
from polyfn.deploy.artifacts import ArtifactError, S3Artifacts
from polyfn.deploy.errors import DeployError
from polyfn.model import (
    FLAVORS,
    RUNTIMES,
    FunctionInfo,
    FunctionSpec,
    Revision,
    SpecError,
    validate_name,
    validate_spec,
)
from polyfn.scheduler.registry import FunctionRegistry

SPEC_FIELDS = set(FunctionSpec.__struct_fields__)
log = logging.getLogger("polyfn.deploy")


class Deployer:
    def __init__(self, settings: Settings, store: Any, registry: FunctionRegistry,
                 artifacts: S3Artifacts | None = None):
        self.settings = settings
        self.store = store
        self.registry = registry
        self.artifacts = artifacts  # where code goes for the other nodes of a cluster (None: one node)
        #: awaited with the name of a function a deploy would create; raises DeployError to refuse it (quotas.py)
        self.admit_create: Callable[[str], Awaitable[None]] | None = None
        self._localising: dict[str, asyncio.Lock] = {}
        #: where pip, npm and go run (deploy/isolate.py): the node's sandbox decides whether they are isolated
        manager = getattr(registry, "manager", None)
        self.builds = isolate.BuildSandbox(settings, lambda: getattr(manager, "sandbox", None))
        swept = self.builds.sweep([settings.deps_dir, settings.data_dir / "build"])  # (a crash's leftovers)
        if swept:
            log.info("removed %d build directories a stopped server left: %s", len(swept), ", ".join(swept))

    async def _build_local(self, spec: FunctionSpec, files: dict[str, bytes], sha: str,
                           progress: Callable[[str], None]) -> tuple[Path, str | None]:
        """The code under this node's data dir, its dependencies installed and its build done (each cached
        by content, so a second revision or node with the same code reuses them)."""
        s = self.settings
        code_dir = archive.materialise(files, s.code_dir / spec.name / sha[:24])
        deps_dir = None
        if "requirements.txt" in files and spec.runtime in ("python", "http"):
            deps_dir = await deps.install(files["requirements.txt"], s.deps_dir, progress, self.builds, files)
        if spec.runtime == "node" and build.needs_npm(files):
            deps_dir = await build.npm_install(files, s.deps_dir, progress, self.builds)
        if spec.runtime == "http" and spec.handler == detect_node.GO_HANDLER:
            await build.go_build(files, s.data_dir / "build" / sha[:24], progress, self.builds)
        if spec.runtime == "dotnet":
            await build_dotnet.build(files, s.data_dir / "build" / sha[:24], s.data_dir, spec.handler, progress,
                                     self.builds)
        return code_dir, deps_dir

    async def localise(self, rev: Revision) -> Revision:
        """`rev` as this node can run it. A revision another node deployed names that node's paths; its code
        is materialised here (fetched from the artifact store when this node has never had it), its
        dependencies installed and its build done, and the revision comes back with this node's paths."""
        if self._runnable_here(rev):  # this node's deploy, or paths this node sees too (same host, shared disk)
            return rev
        local = self.settings.code_dir / rev.function / rev.code_sha256[:24]
        lock = self._localising.setdefault(rev.code_sha256, asyncio.Lock())
        async with lock:
            if local.is_dir() or Path(rev.code_dir).is_dir():
                files = await asyncio.to_thread(_read_tree, local if local.is_dir() else Path(rev.code_dir))
            elif self.artifacts is None:
                raise ArtifactError(f"{rev.key} was deployed by another node, whose code is not in this node's "
                                    "data dir, and this node has no artifact store (POLYFN_ARTIFACTS_URL) to fetch it from")
            else:
                files = await self.artifacts.get(rev.code_sha256)
                log.info("%s: code fetched from %s", rev.key, self.artifacts.describe())
            code_dir, deps_dir = await self._build_local(rev.spec, files, rev.code_sha256,
                                                         lambda m: log.info("%s: %s", rev.key, m))
        self._localising.pop(rev.code_sha256, None)
        return msgspec.structs.replace(rev, code_dir=str(code_dir), deps_dir=deps_dir)

    def _runnable_here(self, rev: Revision) -> bool:
        if not Path(rev.code_dir).is_dir() or (rev.deps_dir is not None and not Path(rev.deps_dir).is_dir()):
            return False
        if rev.spec.runtime == "dotnet":  # built per node, against this polyfn's shims
            return build_dotnet.is_current(self.settings.data_dir / "build" / rev.code_sha256[:24])
        if rev.spec.runtime == "http" and rev.spec.handler == detect_node.GO_HANDLER:  # built per node
            return (self.settings.data_dir / "build" / rev.code_sha256[:24]).is_dir()
        return True

    def parse_spec(self, fields: dict[str, Any]) -> dict[str, Any]:
        unknown = set(fields) - SPEC_FIELDS
        if unknown:
            raise DeployError("invalid_spec", f"unknown field(s): {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(SPEC_FIELDS))}")
        return fields

    async def deploy(self, fields: dict[str, Any], files: dict[str, bytes],
                     progress: Callable[[str], None] = lambda _m: None) -> tuple[FunctionInfo, bool, dict[str, str]]:
        fields = self.parse_spec(dict(fields))
        try:
            validate_name(fields.get("name", ""))
        except SpecError as e:
            raise DeployError(e.code, str(e)) from None
        if self.admit_create is not None and await self.store.get_function(fields["name"]) is None:
            await self.admit_create(fields["name"])  # a new function: its namespace's `functions` quota (quotas.py)
        for key, known in (("flavor", FLAVORS), ("runtime", RUNTIMES)):
            if fields.get(key) is not None and fields[key] not in known:
                raise DeployError("invalid_spec", f"{key}={fields[key]!r} is not supported: use one of {', '.join(known)}")
        s = self.settings
        files = archive.check_files(files, s.max_code_size, s.max_code_files)
        checks.check_syntax(files)
        found = detect.detect(files, fields.get("flavor"), fields.get("handler"), fields.get("runtime"))
        detected = {k: v for k, v in (("runtime", found.runtime), ("flavor", found.flavor),
                                      ("handler", found.handler)) if not fields.get(k)}
        if detected and found.reason:
            detected["why"] = found.reason
            progress(f"detected {', '.join(f'{k}={v}' for k, v in detected.items() if k != 'why')}: {found.reason}")
        fields.update(runtime=found.runtime, flavor=found.flavor, handler=found.handler)
        if found.runtime == "http" and fields.get("h2c") is None and (manifest := knative.h2c_manifest(files)):
            fields["h2c"] = detected["h2c"] = True  # a Knative port named h2c (deploy/knative.py)
            progress(f"h2c=true: {manifest} names a container port h2c (Knative's switch for HTTP/2 without TLS)")
        if found.runtime == "dotnet" and not fields.get("auth"):  # [HttpTrigger(AuthorizationLevel.X)]
            auth = detect_dotnet.auth_for(files, found.handler)
            if auth:
                fields["auth"] = auth
                detected["auth"] = auth
                progress(f"auth={auth}: the HttpTrigger's AuthorizationLevel"
                         + (" (a key in ?code= or x-functions-key, as on Azure)" if auth == "key" else ""))
        fields.setdefault("timeout", s.default_timeout)
        fields.setdefault("memory", s.default_memory)
        try:
            spec = msgspec.convert(fields, FunctionSpec)
            validate_spec(spec, s.max_timeout, s.max_memory, s.max_instances)
        except msgspec.ValidationError as e:
            raise DeployError("invalid_spec", f"invalid spec: {e}") from None
        except SpecError as e:
            raise DeployError(e.code, str(e)) from None
        if spec.runtime == "python":
            try:
                checks.check_handler(files, spec.handler)
            except DeployError as e:
                if e.code == "handler_not_found" and spec.flavor in detect.CONVENTIONS:
                    e.message += f"; flavor {spec.flavor} expects {detect.CONVENTIONS[spec.flavor]}"
                    e.args = (e.message,)
                raise
            detect.check_signature(files, spec.handler, spec.flavor)
        elif spec.runtime != "dotnet":  # C#: the build checks the handler (build_dotnet.check)
            detect_node.check_handler(files, spec.runtime, spec.handler)
        sha = archive.digest(files)
        progress(f"code: {len(files)} files, sha256 {sha[:12]}")
        code_dir, deps_dir = await self._build_local(spec, files, sha, progress)
        if self.artifacts is not None:  # before the revision exists: every node can fetch what it names
            try:
                await self.artifacts.put(sha, files)
            except ArtifactError as e:
                raise DeployError("artifact_store_unavailable", f"cannot store the code for the other nodes: {e}",
                                  503) from None
            progress(f"code archived in {self.artifacts.describe()}")
        rev, created = await self.store.create_revision(spec, sha, str(code_dir), deps_dir)
        wait = min(self.settings.deploy_zygote_wait, max(spec.timeout, 1.0))
        import_ms = await self._switch_when_ready(rev, wait)
        info = await self.store.get_function(spec.name)
        await self.registry.manager.first_offer_ready(rev, wait if import_ms is not None else 0.0)  # (built now)
        progress(f"revision {rev.number} is live" + ("" if import_ms is None else
                 f" (its function zygote imported the module in {import_ms:.0f} ms)"))
        return info, created, detected


    async def _switch_when_ready(self, rev: Revision, wait: float) -> float | None:
        """Route `rev` once this node can start it fast: a served function's new revision first gets its function
        zygote (the module imported, `InstanceManager.succeed`), at most `wait` s, while callers keep reaching the
        revision it replaces, as a Knative revision takes traffic once ready. The zygote's import time in ms, or
        None when none was built. If the function was deleted or deployed again meanwhile, `rev` is not routed."""
        await self.registry.manager.specs.ahead(rev)  # its storage key and sandbox plan, off its first start
        pool = self.registry.prepare(rev)
        try:
            import_ms = await self.registry.manager.built_at_deploy(rev, wait)
        except BaseException:
            self.registry.discard(pool)
            raise
        # time may have passed: route it only if it is still the current revision and not yet served (a cluster's
        # sync may have switched to it meanwhile)
        now = await self.store.get_current_revision(rev.function)
        cur = self.registry.get(rev.function)
        if now is None or _ident(now) != _ident(rev) or (cur is not None and _ident(cur.revision) == _ident(rev)):
            self.registry.discard(pool)
            return import_ms
        self.registry.activate(rev, pool)
        return import_ms


def _ident(rev: Revision) -> tuple[int, str]:
    return rev.number, rev.code_sha256


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def spec_from_json(raw: bytes | str) -> dict[str, Any]:
    try:
        value = jsontext.loads_text(raw)
    except ValueError as e:
        raise DeployError("invalid_json", f"the spec is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise DeployError("invalid_json", "the spec must be a JSON object")
    return value
