"""Console pages of workflows: state machines drawn as graphs (server-side SVG), each execution's path coloured by
outcome, and its event history.

`layout` (pure) places a machine's states in layers by their distance from StartAt; a Parallel's branches and a
Map's item processor are drawn as panels of their own below it. `paint` (pure) reads an execution's history and
says, per state name, how it went: succeeded, failed, running (entered, not left), and which transitions ran.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from polyfn.console.frame import Pages
from polyfn.workflows.definition import Machine, parse

W, H, GAP_X, GAP_Y = 150, 36, 30, 34


def layout(m: Machine, title: str = "") -> list[dict[str, Any]]:
    """Panels (this machine, then its nested ones): states with x/y, edges with points."""
    rank: dict[str, int] = {m.start_at: 0}
    order = [m.start_at]
    i = 0
    while i < len(order):
        st = m.states.get(order[i])
        for _f, target in st.transitions() if st else []:
            if target not in rank and target in m.states:
                rank[target] = rank[order[i]] + 1
                order.append(target)
        i += 1
    order += [n for n in m.states if n not in rank]
    for n in order:
        rank.setdefault(n, max(rank.values(), default=0) + 1)
    columns: dict[int, int] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for n in order:
        col = columns.get(rank[n], 0)
        columns[rank[n]] = col + 1
        st = m.states[n]
        nodes[n] = {"name": n, "type": st.type, "x": 10 + col * (W + GAP_X), "y": 10 + rank[n] * (H + GAP_Y),
                    "end": st.end or st.type in ("Succeed", "Fail")}
    edges = []
    for n in order:
        for field, target in m.states[n].transitions():
            if target in nodes:
                a, b = nodes[n], nodes[target]
                edges.append({"from": n, "to": target, "label": field.split("/")[0],
                              "x1": a["x"] + W / 2, "y1": a["y"] + H, "x2": b["x"] + W / 2, "y2": b["y"]})
    width = max((nd["x"] for nd in nodes.values()), default=0) + W + 20
    height = max((nd["y"] for nd in nodes.values()), default=0) + H + 20
    panels = [{"title": title, "nodes": list(nodes.values()), "edges": edges, "width": width, "height": height}]
    for n in order:
        st = m.states[n]
        for bi, b in enumerate(st.branches):
            panels += layout(b, f"{n} · branch {bi + 1}")
        if st.processor is not None:
            panels += layout(st.processor, f"{n} · each item")
    return panels


def paint(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per state name: succeeded / failed / running / caught; and the transitions that ran (name → name)."""
    states: dict[str, str] = {}
    taken: set[tuple[str, str]] = set()
    last_entered: str | None = None
    ended = ""
    for e in events:
        t = e["type"]
        d = e.get("stateEnteredEventDetails") or e.get("stateExitedEventDetails")
        if t.endswith("StateEntered") and d:
            if last_entered is not None and states.get(last_entered) in ("succeeded", "caught"):
                taken.add((last_entered, d["name"]))
            states[d["name"]] = "failed" if t == "FailStateEntered" else "running"
            last_entered = d["name"]
        elif t.endswith("StateExited") and d:
            states[d["name"]] = "caught" if states.get(d["name"]) == "failing" else "succeeded"
            last_entered = d["name"]
        elif t in ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "LambdaFunctionTimedOut", "ParallelStateFailed",
                   "MapStateFailed") and last_entered:
            states[last_entered] = "failing"
        elif t.startswith("Execution") and t != "ExecutionStarted":
            ended = t
    if ended in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
        for n, s in states.items():
            if s in ("running", "failing"):
                states[n] = "failed"
    for n, s in states.items():
        if s == "failing":
            states[n] = "failed" if ended else "running"
    return {"states": states, "taken": [list(t) for t in sorted(taken)]}


def _details(e: dict[str, Any]) -> str:
    d = next((v for k, v in e.items() if k.endswith("EventDetails")), None) or {}
    parts = [str(d[k]) for k in ("name", "resource", "error") if d.get(k)]
    for k in ("input", "output", "parameters", "cause"):
        if d.get(k):
            parts.append(f"{k}: {str(d[k])[:300]}")
    return "  ".join(parts)


class WorkflowPages:
    """`workflows` (WorkflowService, or None); the default namespace's only (the guard's `default_only`)."""

    def __init__(self, *, workflows: Any, pages: Pages):
        self.workflows = workflows
        self.pages = pages

    async def workflows_page(self, request: Request) -> Response:
        svc = self.workflows
        ms = await svc.list_machines() if svc is not None else []
        counts = await svc.store.count_by_status("default") if svc is not None else {}
        return self.pages.render(request, "workflows.html", active="workflows", machines=ms, counts=counts)

    async def workflow_page(self, request: Request) -> Response:
        svc = self.workflows
        name = request.path_params["name"]
        m = await svc.store.get_machine("default", name) if svc is not None else None
        if m is None:
            return self.pages.not_found(request, f"workflow {name!r}")
        exs = await svc.list_executions(name, None, 50)
        return self.pages.render(request, "workflow.html", active="workflows", m=m, panels=layout(parse(m.definition)),
                                 paint={"states": {}, "taken": []}, executions=exs, execution=None, events=[], W=W,
                                 H=H, definition=json.dumps(json.loads(m.definition), indent=2))

    async def execution_page(self, request: Request) -> Response:
        svc = self.workflows
        eid = request.path_params["id"]
        ex = await svc.store.get_execution(eid) if svc is not None else None
        if ex is None or ex.kind != "asl":
            return self.pages.not_found(request, f"execution {eid!r}")
        found = await svc.store.get_definition(ex.namespace, ex.machine, ex.revision)
        m = await svc.store.get_machine(ex.namespace, ex.machine)
        events = await svc.history(ex.id, 0, 5000)
        text = found[1] if found else "{}"
        return self.pages.render(
            request, "workflow.html", active="workflows", m=m, panels=layout(parse(text)), paint=paint(events),
            executions=[], execution=ex, W=W, H=H, definition=json.dumps(json.loads(text), indent=2),
            events=[{"id": e["id"], "type": e["type"], "ts": e["timestamp"], "details": _details(e)} for e in events])
