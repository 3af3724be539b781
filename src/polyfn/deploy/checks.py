"""Deploy-time checks that catch what would otherwise fail on the first invocation."""

from __future__ import annotations

import ast

from polyfn.deploy.errors import DeployError


def check_syntax(files: dict[str, bytes]) -> None:
    """Compile every Python file; report the first error as `file:line: message`."""
    for name in sorted(files):
        if not name.endswith(".py"):
            continue
        try:
            compile(files[name], name, "exec", dont_inherit=True)
        except SyntaxError as e:
            line = f":{e.lineno}" if e.lineno else ""
            raise DeployError("syntax_error", f"{name}{line}: {e.msg}") from None
        except ValueError as e:  # e.g. source with NUL bytes
            raise DeployError("syntax_error", f"{name}: {e}") from None


def check_handler(files: dict[str, bytes], handler: str) -> None:
    """The handler's module must exist in the code (or its dependencies) and define the function."""
    module, _, func = handler.rpartition(".")
    path = module.replace(".", "/")
    src = files.get(path + ".py")
    if src is None:
        src = files.get(path + "/__init__.py")
    if src is None:
        shown = ", ".join(sorted(n for n in files if n.endswith(".py"))[:10]) or "none"
        raise DeployError(
            "module_not_found",
            f"handler module {module!r} not found: expected {path}.py (Python files in the upload: {shown})",
        )
    tree = ast.parse(src)
    names: set[str] = set()
    dynamic = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    dynamic = True
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.If | ast.Try | ast.With):
            dynamic = True  # definitions under conditions: leave it to the runtime check
    if func not in names and not dynamic and "__getattr__" not in names:
        defined = ", ".join(sorted(n for n in names if not n.startswith("_"))[:10]) or "nothing"
        raise DeployError(
            "handler_not_found",
            f"handler function {func!r} is not defined in {path}.py (it defines: {defined})",
        )
