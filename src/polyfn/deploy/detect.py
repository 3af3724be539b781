"""Infer runtime, flavor and handler from the code when the user did not say.

Everything here is data: `RULES` is an ordered list; each rule describes a top-level Python function by
what vendors' conventions make recognisable (its name, its parameters, a decorator, an import in its
module, the module's file name, how it uses its first parameter). For every function of every candidate
module the first matching rule gives the flavor; among all matches the highest rule wins. Two functions
matching the same best rule are ambiguous (unless only one sits in a conventional file name). Azure's
two programming models are recognised before the rules: a `function.json` (v1) or a module-level
`func.FunctionApp()` (v2).

C# (Azure Functions' `[FunctionName]`) is recognised by `polyfn.deploy.detect_dotnet`, asked before all.
Non-Python code is recognised by `polyfn.deploy.detect_node` when that module exists (Node.js and plain
HTTP servers): it is asked first and returns None when the upload is not its kind.

`detect()` returns `Detection(runtime, flavor, handler, reason)`; unknown or ambiguous code is a
`DeployError` that lists what was looked for.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from polyfn.deploy import detect_dotnet
from polyfn.deploy.errors import DeployError

PREFERRED_MODULES = ("handler", "main", "index", "lambda_function", "function_app", "function", "app", "func",
                     "__main__")


@dataclass(frozen=True)
class Rule:
    flavor: str
    why: str  # what the user is told, e.g. "`lambda_handler(event, context)`: AWS Lambda's convention"
    function: str | None = None  # exact top-level name; None = any
    arity: int | None = None  # positional parameters
    params: tuple[str, ...] | None = None  # leading parameter names
    decorator: str | None = None  # dotted decorator, e.g. "functions_framework.http"
    imports: str | None = None  # a module the file imports (prefix match)
    module: str | None = None  # the module's name (a vendor's default file name)
    uses_key: str | None = None  # the first parameter is subscripted with this string key


RULES: tuple[Rule, ...] = (
    Rule("gcp", "`@functions_framework.http`", decorator="functions_framework.http"),
    Rule("gcp", "`@functions_framework.cloud_event`", decorator="functions_framework.cloud_event"),
    Rule("azure", "`def main(req)` importing azure.functions (Azure v1)", function="main",
         imports="azure.functions"),
    Rule("aws", "`lambda_handler(event, context)` (AWS Lambda)", function="lambda_handler", arity=2),
    Rule("tencent", "`main_handler(event, context)` (Tencent SCF)", function="main_handler", arity=2),
    Rule("aliyun", "`handler(environ, start_response)` (Alibaba FC HTTP/WSGI)",
         params=("environ", "start_response")),
    Rule("openfaas-http", "`handle(event, context)` (OpenFaaS python3-http)", function="handle", arity=2),
    Rule("openfaas", "`handle(req)` (OpenFaaS python3)", function="handle", arity=1),
    Rule("aws", "a `(event, context)` function in `lambda_function.py` (AWS Lambda's default file)", arity=2,
         module="lambda_function"),
    Rule("aliyun", "`index.handler(event, context)` (Alibaba FC's default handler)", function="handler",
         arity=2, module="index"),
    Rule("gcp", "a one-argument function taking `request` (Google Cloud Functions HTTP)", arity=1,
         params=("request",)),
    Rule("openwhisk", "`main(params)` (OpenWhisk)", function="main", arity=1),
    Rule("native", "`handler(event, context)` (polyfn native)", function="handler", arity=2),
    # After native: a function named `handler` reading event['data'] is polyfn's own (e.g. a CloudEvent
    # consumer); Kubeless functions have their own names (the seed's `reverse`).
    Rule("kubeless", "a `(event, context)` function reading `event['data']` (Kubeless)", arity=2,
         uses_key="data"),
)

#: Positional arguments each flavor passes: for the fallback "the only function of that shape".
FLAVOR_ARITY = {"native": 2, "aws": 2, "tencent": 2, "aliyun": 2, "kubeless": 2, "openfaas-http": 2,
                "openfaas": 1, "openwhisk": 1, "gcp": 1, "azure": 1}

#: How each flavor's handler looks, for error messages.
CONVENTIONS = {
    "native": "polyfn native `def handler(event, context)`",
    "aws": "AWS Lambda `def handler(event, context)`",
    "tencent": "Tencent SCF `def main_handler(event, context)`",
    "aliyun": "Alibaba FC `def handler(event, context)` or WSGI `def handler(environ, start_response)`",
    "kubeless": "Kubeless `def f(event, context)`",
    "openfaas-http": "OpenFaaS python3-http `def handle(event, context)`",
    "openfaas": "OpenFaaS python3 `def handle(req)`",
    "openwhisk": "OpenWhisk `def main(params)`",
    "gcp": "GCP `def fn(request)`, `def fn(cloud_event)` or background `def fn(data, context)`",
    "azure": "Azure `def main(req)` with function.json, or `app = func.FunctionApp()`",
}


def check_signature(files: dict[str, bytes], handler: str, flavor: str) -> None:
    """A deploy-time error when the handler's parameters cannot fit the flavor's convention (the runtime
    checks again at start, for code that defines its handler dynamically)."""
    want = FLAVOR_ARITY.get(flavor)
    if want is None or flavor == "azure":
        return
    module, _, func = handler.rpartition(".")
    src = files.get(module.replace(".", "/") + ".py") or files.get(module.replace(".", "/") + "/__init__.py")
    mod = analyse(module, src.decode("utf-8", "replace")) if src else None
    fn = mod.functions.get(func) if mod else None
    if fn is None:
        return
    try:
        tree = ast.parse(src or b"")
    except SyntaxError:
        return
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == func),
                None)
    if node is None or node.args.vararg is not None:
        return
    total = len(node.args.posonlyargs) + len(node.args.args)
    required = total - len(node.args.defaults)
    allowed = {1, 2} if flavor == "gcp" else {want}
    if not any(required <= n <= total for n in allowed):
        raise DeployError(
            "handler_signature",
            f"{handler} takes {total} positional parameter(s) ({', '.join(fn.params) or 'none'}), but the "
            f"{CONVENTIONS[flavor]} convention passes {' or '.join(str(n) for n in sorted(allowed))}",
        )


@dataclass(frozen=True)
class Detection:
    runtime: str
    flavor: str
    handler: str
    reason: str = ""


@dataclass
class FunctionInfo:
    name: str
    params: list[str]
    decorators: list[str]
    uses: set[str]


@dataclass
class ModuleInfo:
    name: str
    imports: set[str]
    functions: dict[str, FunctionInfo]
    function_apps: list[str]  # module-level names bound to func.FunctionApp(...)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def analyse(name: str, source: str) -> ModuleInfo | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    aliases: dict[str, str] = {}  # local name -> module it stands for
    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                imports.add(a.name)
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def resolve(dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        full = aliases.get(head, head)
        return f"{full}.{rest}" if rest else full

    functions: dict[str, FunctionInfo] = {}
    apps: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
            uses: set[str] = set()
            if params:
                first = params[0]
                for sub in ast.walk(node):
                    if (isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id == first
                            and isinstance(sub.slice, ast.Constant) and isinstance(sub.slice.value, str)):
                        uses.add(sub.slice.value)
            functions[node.name] = FunctionInfo(node.name, params, [resolve(_dotted(d)) for d in node.decorator_list],
                                                uses)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if resolve(_dotted(node.value.func)) == "azure.functions.FunctionApp":
                apps.extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return ModuleInfo(name, imports, functions, apps)


def matches(rule: Rule, mod: ModuleInfo, fn: FunctionInfo) -> bool:
    if rule.function is not None and fn.name != rule.function:
        return False
    if rule.arity is not None and len(fn.params) != rule.arity:
        return False
    if rule.params is not None and tuple(fn.params[: len(rule.params)]) != rule.params:
        return False
    if rule.decorator is not None and rule.decorator not in fn.decorators:
        return False
    if rule.imports is not None and not any(i == rule.imports or i.startswith(rule.imports + ".")
                                            for i in mod.imports):
        return False
    if rule.module is not None and mod.name != rule.module:
        return False
    return rule.uses_key is None or rule.uses_key in fn.uses


def candidate_modules(files: dict[str, bytes]) -> list[str]:
    top = [name[:-3] for name in files if name.endswith(".py") and "/" not in name]
    preferred = [m for m in PREFERRED_MODULES if m in top]
    rest = sorted(m for m in top if m not in preferred)
    return preferred + rest


def _modules(files: dict[str, bytes]) -> list[ModuleInfo]:
    out = []
    for m in candidate_modules(files):
        info = analyse(m, files[m + ".py"].decode("utf-8", "replace"))
        if info is not None:
            out.append(info)
    return out


def _azure_v1(files: dict[str, bytes]) -> list[tuple[str, str]]:
    """(handler, where) for every function.json (Azure v1 layout: <Function>/function.json + __init__.py)."""
    found = []
    for path in sorted(files):
        if path != "function.json" and not (path.endswith("/function.json") and path.count("/") == 1):
            continue
        try:
            cfg: Any = json.loads(files[path])
        except ValueError:
            continue
        if not isinstance(cfg, dict) or not isinstance(cfg.get("bindings"), list):
            continue
        folder = path.rpartition("/")[0]
        script = str(cfg.get("scriptFile") or "__init__.py").removeprefix("./")
        entry = str(cfg.get("entryPoint") or "main")
        mod = script[:-3] if script.endswith(".py") else script
        if folder:
            module = folder if mod == "__init__" else f"{folder}.{mod}"
        else:
            module = mod
        found.append((f"{module.replace('/', '.')}.{entry}", path))
    return found


def _python(files: dict[str, bytes], flavor: str | None, handler: str | None) -> Detection:
    modules = _modules(files)
    if handler:
        return _python_given(files, modules, flavor, handler)
    if flavor in (None, "azure"):
        azure = _python_azure(files, modules)
        if azure is not None:
            return azure
    ruled = _python_by_rules(modules, flavor)
    if ruled is not None:
        return ruled
    # The only function with the flavor's arity in a lone module: `def anything(event, context)`.
    if len(modules) == 1:
        want = FLAVOR_ARITY.get(flavor or "native")
        fns = [f for f in modules[0].functions.values() if len(f.params) == want]
        if len(fns) == 1:
            return Detection("python", flavor or "native", f"{modules[0].name}.{fns[0].name}",
                             f"the only {want}-argument function")
    looked = "; ".join(r.why for r in RULES if flavor is None or r.flavor == flavor)
    if flavor in (None, "azure"):
        looked = "function.json or func.FunctionApp() (Azure); " + looked
    where = ", ".join(m.name + ".py" for m in modules) or "no top-level .py file"
    raise DeployError(
        "handler_not_found",
        f"cannot tell which function to run: looked in {where} for {looked}. "
        "Say it with --handler MODULE.FUNCTION (and --flavor).",
    )


def _python_given(files: dict[str, bytes], modules: list[ModuleInfo], flavor: str | None,
                  handler: str) -> Detection:
    """The flavor of the handler the deployer named (given, or told by the code's shape)."""
    module, _, func = handler.rpartition(".")
    mod = next((m for m in modules if m.name == module), None)
    if mod is None:
        src = files.get(module.replace(".", "/") + ".py") or files.get(module.replace(".", "/") + "/__init__.py")
        mod = analyse(module, src.decode("utf-8", "replace")) if src else None
    if flavor:
        return Detection("python", flavor, handler, "as given")
    if mod is not None and func in mod.function_apps:
        return Detection("python", "azure", handler, "a func.FunctionApp() (Azure v2)")
    fn = mod.functions.get(func) if mod else None
    if fn is not None and mod is not None:
        for rule in RULES:
            if rule.function in (None, func) and matches(rule, mod, fn):
                return Detection("python", rule.flavor, handler, rule.why)
    if any(h == handler for h, _ in _azure_v1(files)):
        return Detection("python", "azure", handler, "function.json (Azure v1)")
    if fn is not None and len(fn.params) == 1:
        return Detection("python", "openfaas", handler, "a one-argument function: OpenFaaS `handle(req)`")
    return Detection("python", "native", handler, "no vendor convention recognised: polyfn native")


def _python_azure(files: dict[str, bytes], modules: list[ModuleInfo]) -> Detection | None:
    """An Azure function: one function.json (v1), or one func.FunctionApp() (v2); several v1 ones are ambiguous."""
    v1 = _azure_v1(files)
    if len(v1) == 1:
        return Detection("python", "azure", v1[0][0], f"{v1[0][1]} (Azure v1)")
    if len(v1) > 1:
        raise DeployError("ambiguous_handler",
                          "several Azure functions (" + ", ".join(p for _, p in v1) + "): deploy each one "
                          "with --handler " + " or --handler ".join(h for h, _ in v1))
    apps = [(m.name, a) for m in modules for a in m.function_apps]
    if len(apps) == 1:
        return Detection("python", "azure", f"{apps[0][0]}.{apps[0][1]}", "func.FunctionApp() (Azure v2)")
    return None


def _python_by_rules(modules: list[ModuleInfo], flavor: str | None) -> Detection | None:
    """The function the earliest matching rule picks (one module preferred among equals); ambiguous when the
    best rule matches several."""
    best: list[tuple[int, ModuleInfo, FunctionInfo]] = []
    for mod in modules:
        for fn in mod.functions.values():
            for i, rule in enumerate(RULES):
                if (flavor is None or rule.flavor == flavor) and matches(rule, mod, fn):
                    best.append((i, mod, fn))
                    break
    if not best:
        return None
    top = min(i for i, _, _ in best)
    winners = [(m, f) for i, m, f in best if i == top]
    if len(winners) > 1:
        preferred = [(m, f) for m, f in winners if m.name in PREFERRED_MODULES]
        winners = preferred if len(preferred) == 1 else winners
    if len(winners) == 1:
        m, f = winners[0]
        return Detection("python", RULES[top].flavor, f"{m.name}.{f.name}", RULES[top].why)
    raise DeployError(
        "ambiguous_handler",
        f"several functions look like {RULES[top].why}: "
        + ", ".join(f"{m.name}.{f.name}" for m, f in winners) + ". Say which with --handler MODULE.FUNCTION.",
    )


def _node_hook() -> Any:
    """`polyfn.deploy.detect_node` (Node.js and plain-HTTP detection) when this build has it. Its API:
    `infer_runtime(files, flavor) -> "node" | "http" | None`, `has_node_or_http_code(files) -> bool`,
    `detect(files, runtime, flavor, handler) -> (runtime, flavor, handler)`."""
    try:
        from polyfn.deploy import detect_node  # type: ignore[attr-defined]
    except ImportError:
        return None
    return detect_node


def detect(files: dict[str, bytes], flavor: str | None, handler: str | None,
           runtime: str | None = None) -> Detection:
    """Runtime, flavor and handler for the code in `files`, honouring whatever the user gave.

    Python first unless the upload is clearly Node.js or an HTTP server (the hook says so); when Python
    detection finds nothing and there is Node/HTTP code, the hook decides."""
    if runtime == "dotnet" or (runtime is None and detect_dotnet.is_dotnet(files)):  # C# Azure functions
        return Detection(*detect_dotnet.detect(files, flavor, handler))
    hook = _node_hook()
    given = runtime  # what the user said; the hook decides between node and http when they said nothing
    if runtime is None and hook is not None:
        runtime = hook.infer_runtime(files, flavor)
    if runtime in (None, "python"):
        try:
            if flavor and handler:
                return Detection("python", flavor, handler, "as given")
            return _python(files, flavor, handler)
        except DeployError:
            if runtime == "python" or hook is None or not hook.has_node_or_http_code(files):
                raise
    if hook is None:
        raise DeployError("invalid_spec", f"runtime={runtime!r} is not supported by this build")
    rt, fl, h = hook.detect(files, given, flavor, handler)
    what = {"node": "Node.js code", "http": "an HTTP server"}.get(rt, rt)
    return Detection(rt, fl, h, f"{what} (detect_node rules)")
