"""An Azure Functions C# project (`host.json` + `.cs` files with `[FunctionName]`, in-process model) as a plan:
one polyfn function per `[FunctionName]` (runtime `dotnet`, handler the name), each with the trigger its
attribute declares: `[HttpTrigger]` → HTTP (auth from its AuthorizationLevel, decided at deploy),
`[TimerTrigger("NCRONTAB")]` → cron, `[BlobTrigger("container/{name}")]` → storage, `[QueueTrigger("q")]` →
a queue (polyfn topic). `azure.parse` hands over here when the folder has no `*/function.json`.
"""

from __future__ import annotations

from pathlib import Path

from polyfn.deploy.detect_dotnet import functions
from polyfn.manifests import schedules
from polyfn.manifests.model import ManifestError, Plan, PlannedFunction, TriggerDecl, polyfn_name


def read_sources(app_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(app_dir).as_posix(): p.read_bytes() for p in sorted(app_dir.rglob("*.cs")) if p.is_file()}


def parse(app_dir: Path, plan: Plan, timeout: float | None) -> bool:
    """Add the project's C# functions to `plan`; False when the folder has none."""
    fns = functions(read_sources(app_dir))
    for fn in fns:
        where = f"{fn.file}: [FunctionName(\"{fn.name}\")]"
        pf = PlannedFunction(polyfn_name(fn.name, where), app_dir, {}, where)
        pf.spec.update(name=pf.name, runtime="dotnet", flavor="azure", handler=fn.name)
        if timeout:
            pf.spec["timeout"] = float(timeout)
        plan.functions.append(pf)
        if fn.trigger == "http":
            pf.triggers.append(TriggerDecl("http", {"auth_level": fn.auth_level}, where))
        elif fn.trigger == "timer":
            try:
                pf.triggers.append(TriggerDecl("cron", schedules.azure(fn.argument), where))
            except ValueError as e:
                raise ManifestError(f"{where}: [TimerTrigger]: {e}") from None
        elif fn.trigger == "blob":
            container, _, pattern = fn.argument.partition("/")
            pf.triggers.append(TriggerDecl("storage", {"bucket": container, "filter": pattern, "events": ["created"]},
                                           where))
        elif fn.trigger == "queue":
            pf.triggers.append(TriggerDecl("queue", {"queue": fn.argument}, where))
    return bool(fns)
