"""Infer flavor and handler from the code when the user did not say.

Rules are data (`RULES`): for each candidate module (well-known file names first, then a lone `.py`
file), each rule names a top-level function and its arity. The first match wins. Adding a vendor is adding
rules here. Anything ambiguous or unknown is an error that lists what was looked for.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from polyfn.deploy.errors import DeployError

PREFERRED_MODULES = ("handler", "main", "index", "function", "app", "func")


@dataclass(frozen=True)
class Rule:
    function: str
    arity: int
    flavor: str


RULES = (
    Rule("handle", 1, "openfaas"),
    Rule("handler", 2, "native"),
)


def top_level_functions(source: str) -> dict[str, int]:
    """{name: number of positional parameters} of the module's top-level functions."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = len(node.args.posonlyargs) + len(node.args.args)
    return out


def candidate_modules(files: dict[str, bytes]) -> list[str]:
    top = [name[:-3] for name in files if name.endswith(".py") and "/" not in name]
    preferred = [m for m in PREFERRED_MODULES if m in top]
    rest = sorted(m for m in top if m not in preferred)
    return preferred + rest


def detect(files: dict[str, bytes], flavor: str | None, handler: str | None) -> tuple[str, str]:
    """(flavor, handler) for the code in `files`, honouring whatever the user gave."""
    if flavor and handler:
        return flavor, handler
    modules = candidate_modules(files)
    if handler:
        module, _, func = handler.rpartition(".")
        src = files.get(module.replace(".", "/") + ".py", b"").decode("utf-8", "replace")
        arity = top_level_functions(src).get(func)
        for rule in RULES:
            if rule.arity == arity and (rule.function == func or flavor is None):
                return flavor or rule.flavor, handler
        return flavor or "native", handler
    for module in modules:
        funcs = top_level_functions(files[module + ".py"].decode("utf-8", "replace"))
        for rule in RULES:
            if (flavor is None or rule.flavor == flavor) and funcs.get(rule.function) == rule.arity:
                return rule.flavor, f"{module}.{rule.function}"
    # A lone module with a single two-argument function: `def anything(event, context)`.
    if len(modules) == 1 and flavor in (None, "native"):
        funcs = top_level_functions(files[modules[0] + ".py"].decode("utf-8", "replace"))
        two = [f for f, n in funcs.items() if n == 2]
        if len(two) == 1:
            return "native", f"{modules[0]}.{two[0]}"
    looked = ", ".join(f"`{r.function}` with {r.arity} argument(s) ({r.flavor})" for r in RULES)
    where = ", ".join(m + ".py" for m in modules) or "no top-level .py file"
    raise DeployError(
        "handler_not_found",
        f"cannot tell which function to run: looked in {where} for {looked}. "
        "Say it with --handler MODULE.FUNCTION (and --flavor).",
    )
