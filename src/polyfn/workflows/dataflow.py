"""How data moves through a state: InputPath → Parameters → (the state's work) → ResultSelector → ResultPath →
OutputPath, and the payload templates (`Parameters`, `ResultSelector`, `ItemSelector`) whose `"key.$"` fields
take their value from a path or an intrinsic function.

Templates are compiled once (`Template(raw)`, at validation) and rendered per state run with the input, the
context object and the random source.
"""

from __future__ import annotations

import random
from typing import Any

from polyfn.workflows.intrinsics import Call, IntrinsicSyntaxError, compile_call, is_intrinsic
from polyfn.workflows.jsonpath import Path, PathSyntaxError, compile_path, set_path

#: a field value (`InputPath`, `OutputPath`) that is JSON null: the state's input/output becomes `{}`
NULL = None


class TemplateError(ValueError):
    def __init__(self, pointer: str, message: str):
        super().__init__(message)
        self.pointer, self.message = pointer, message  # pointer: where in the template (`/a/b.$`)


class Template:
    """A compiled payload template: plain values copied, `"key.$"` fields evaluated."""

    __slots__ = ("node", "raw")

    def __init__(self, raw: Any):
        self.raw = raw
        self.node = _compile(raw, "")

    def render(self, data: Any, ctx: Any, rng: random.Random) -> Any:
        return _render(self.node, data, ctx, rng)


# compiled nodes: ("v", value) a constant; ("o", [(key, node) | (key, Path|Call, dynamic)]) an object; ("a", [...])
def _compile(raw: Any, pointer: str) -> Any:
    if isinstance(raw, dict):
        fields: list[tuple[str, Any, bool]] = []
        constant = True
        for k, v in raw.items():
            if k.endswith(".$"):
                name = k[:-2]
                where = f"{pointer}/{k}"
                if not isinstance(v, str):
                    raise TemplateError(where, f"the value of '{k}' must be a JSONPath or an intrinsic function string")
                try:
                    expr: Path | Call = compile_call(v) if is_intrinsic(v) else compile_path(v)
                except (PathSyntaxError, IntrinsicSyntaxError) as e:
                    raise TemplateError(where, f"the value of '{k}' is not a valid JSONPath or intrinsic function: {e}") from None
                if name in raw:
                    raise TemplateError(where, f"both '{name}' and '{k}' are set")
                fields.append((name, expr, True))
                constant = False
            else:
                sub = _compile(v, f"{pointer}/{k}")
                constant = constant and sub[0] == "v"
                fields.append((k, sub, False))
        return ("v", raw) if constant else ("o", fields)
    if isinstance(raw, list):
        items = [_compile(v, f"{pointer}/{i}") for i, v in enumerate(raw)]
        return ("v", raw) if all(i[0] == "v" for i in items) else ("a", items)
    return ("v", raw)


def _render(node: Any, data: Any, ctx: Any, rng: random.Random) -> Any:
    kind = node[0]
    if kind == "v":
        return node[1]
    if kind == "a":
        return [_render(n, data, ctx, rng) for n in node[1]]
    out: dict[str, Any] = {}
    for key, sub, dynamic in node[1]:
        if dynamic:
            if isinstance(sub, Path):
                out[key] = sub.get(data, ctx, what=f"the field '{key}.$'")
            else:
                out[key] = sub.evaluate(data, ctx, rng)
        else:
            out[key] = _render(sub, data, ctx, rng)
    return out


def select(path: Path | None, data: Any, ctx: Any, what: str) -> Any:
    """InputPath / OutputPath / ItemsPath: the selected value, `{}` for a null path."""
    if path is None:
        return {}
    if path.keys == () and not path.context:
        return data
    return path.get(data, ctx, what)


def merge_result(raw_input: Any, result: Any, result_path: Path | None) -> Any:
    """ResultPath: the result placed into the state's raw input (`null` discards the result)."""
    if result_path is None:
        return raw_input
    return set_path(raw_input, result_path, result)
