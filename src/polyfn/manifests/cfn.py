"""CloudFormation-flavoured YAML: a safe loader that knows the short intrinsic tags, and a resolver.

`load(text)` parses YAML (or JSON) with `yaml.SafeLoader` extended by constructors for `!Ref`, `!GetAtt`,
`!Sub`, `!Join`, `!If`, `!Select`, … which produce `Intrinsic` values carrying the tag, its argument and the
line it was on. The long forms (`{"Ref": x}`, `{"Fn::GetAtt": …}`) become the same `Intrinsic`s, so the
resolver sees one shape.

`Resolver.value(v, where)` replaces what can be known without AWS: `Ref` to a parameter (its `Default` or a
`--param` override), to a pseudo parameter (`AWS::Region`, …) or to a function of the template; `!GetAtt
Fn.Arn`; `!Sub` and `!Join` over those; `!Select`/`!Split` on known values. Anything else raises
ManifestError naming the intrinsic and where it is (file path of keys and line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from polyfn.manifests.model import ManifestError

TAGS = ("Ref", "GetAtt", "Sub", "Join", "If", "Select", "Split", "FindInMap", "ImportValue", "Base64",
        "Equals", "Not", "And", "Or", "Condition", "GetAZs", "Cidr", "Transform", "Length", "ToJsonString")


class Intrinsic:
    __slots__ = ("arg", "line", "name")

    def __init__(self, name: str, arg: Any, line: int = 0):
        self.name = name  # "Ref", "GetAtt", "Sub", ...
        self.arg = arg
        self.line = line

    def __repr__(self) -> str:
        return f"!{self.name} {self.arg!r}"

    def describe(self) -> str:
        arg = self.arg
        if self.name == "GetAtt" and isinstance(arg, list):
            arg = ".".join(str(a) for a in arg)
        return f"!{self.name} {arg}" if isinstance(arg, str) else f"!{self.name} {arg!r}"


class CfnLoader(yaml.SafeLoader):
    pass


def _constructor(name: str) -> Callable[[yaml.Loader, yaml.Node], Intrinsic]:
    def construct(loader: yaml.Loader, node: yaml.Node) -> Intrinsic:
        if isinstance(node, yaml.ScalarNode):
            arg: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                arg = str(arg).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            arg = loader.construct_sequence(node, deep=True)
        else:
            arg = loader.construct_mapping(node, deep=True)
        return Intrinsic(name, arg, node.start_mark.line + 1)

    return construct


for _t in TAGS:
    CfnLoader.add_constructor("!" + _t, _constructor(_t))


def _long_forms(v: Any) -> Any:
    """`{"Ref": x}` and `{"Fn::X": y}` → Intrinsic, recursively."""
    if isinstance(v, dict):
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return Intrinsic("Ref", _long_forms(arg))
            if isinstance(k, str) and k.startswith("Fn::") and k[4:] in TAGS:
                arg = _long_forms(arg)
                if k == "Fn::GetAtt" and isinstance(arg, str):
                    arg = arg.split(".", 1)
                return Intrinsic(k[4:], arg)
        return {k: _long_forms(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_long_forms(x) for x in v]
    if isinstance(v, Intrinsic):
        v.arg = _long_forms(v.arg)
    return v


def load(text: str, source: str = "") -> Any:
    try:
        return _long_forms(yaml.load(text, Loader=CfnLoader))
    except yaml.YAMLError as e:
        raise ManifestError(f"{source}: not valid YAML: {e}") from None


class Resolver:
    def __init__(self, parameters: dict[str, Any], overrides: dict[str, str], functions: dict[str, str],
                 region: str = "us-east-1", stack: str = "polyfn"):
        self.values: dict[str, str] = {}
        for k, p in (parameters or {}).items():
            if isinstance(p, dict) and "Default" in p:
                self.values[k] = str(p["Default"])
        self.values.update(overrides)
        self.pseudo = {"AWS::Region": region, "AWS::AccountId": "000000000000", "AWS::StackName": stack,
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": ""}
        self.functions = functions  # logical id → polyfn name
        self.region = region

    def _ref(self, name: str, it: Intrinsic, where: str) -> str:
        if name in self.values:
            return self.values[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.functions:
            return self.functions[name]
        raise self._error(it, where, f"`{name}` is not a parameter with a Default or a function of this "
                          f"template: pass --param {name}=VALUE")

    def _error(self, it: Intrinsic, where: str, why: str) -> ManifestError:
        line = f" (line {it.line})" if it.line else ""
        return ManifestError(f"cannot resolve CloudFormation intrinsic {it.describe()} at {where}{line}: {why}")

    def value(self, v: Any, where: str) -> Any:
        if isinstance(v, dict):
            return {k: self.value(x, f"{where}.{k}") for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, Intrinsic):
            return v
        it = v
        if it.name == "Ref" and isinstance(it.arg, str):
            return self._ref(it.arg, it, where)
        if it.name == "GetAtt" and isinstance(it.arg, list) and len(it.arg) == 2:
            res, attr = (str(a) for a in it.arg)
            if res in self.functions and attr == "Arn":
                return f"arn:aws:lambda:{self.region}:000000000000:function:{self.functions[res]}"
            raise self._error(it, where, f"polyfn knows only the Arn of this template's functions, not {res}.{attr}")
        if it.name == "Sub":
            if isinstance(it.arg, list) and len(it.arg) == 2 and isinstance(it.arg[1], dict):
                text, local = it.arg[0], {k: str(self.value(x, where)) for k, x in it.arg[1].items()}
            else:
                text, local = it.arg, {}
            if not isinstance(text, str):
                raise self._error(it, where, "expected a string")

            def sub(m: re.Match[str]) -> str:
                name = m[1]
                if name.startswith("!"):
                    return "${" + name[1:] + "}"
                if name in local:
                    return local[name]
                if "." in name:
                    res, attr = name.split(".", 1)
                    return str(self.value(Intrinsic("GetAtt", [res, attr], it.line), where))
                return self._ref(name, it, where)

            return re.sub(r"\$\{([^}]+)\}", sub, text)
        if it.name == "Join" and isinstance(it.arg, list) and len(it.arg) == 2:
            sep, items = it.arg
            items = self.value(items, where)
            if not isinstance(items, list):
                raise self._error(it, where, "expected a list to join")
            return str(sep).join(str(x) for x in items)
        if it.name == "Select" and isinstance(it.arg, list) and len(it.arg) == 2:
            idx, items = self.value(it.arg, where)
            try:
                return items[int(idx)]
            except (IndexError, ValueError, TypeError):
                raise self._error(it, where, f"index {idx!r} is out of range") from None
        if it.name == "Split" and isinstance(it.arg, list) and len(it.arg) == 2:
            sep, text = self.value(it.arg, where)
            return str(text).split(str(sep))
        if it.name == "Base64":
            import base64

            return base64.b64encode(str(self.value(it.arg, where)).encode()).decode()
        raise self._error(it, where, f"polyfn does not evaluate !{it.name}")
