"""Recognise Azure Functions written in C# (in-process model) in an upload: the `dotnet` runtime.

An upload is C# when it has `.cs` files declaring `[FunctionName("...")]` (a folder of them, one file, or an
Azure project with `*.csproj` and `host.json`; `bin/` and `obj/` are build output and ignored). Each
`[FunctionName]` is a function; a deploy serves one, named by `--handler NAME` when there are several.

Reading the declarations here is lexical (comments and strings aside, the attribute syntax is fixed); the
compiler and the host's `describe` (deploy/build_dotnet.py) check the code itself at deploy time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyfn.deploy.errors import DeployError

RUNTIME = "dotnet"
FLAVOR = "azure"
_NAME = re.compile(r"\[\s*(?:Microsoft\.Azure\.WebJobs\.)?FunctionName(?:Attribute)?\s*\(\s*\"([^\"]+)\"\s*\)")
_AUTH = re.compile(r"AuthorizationLevel\s*\.\s*(\w+)")
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//[^\n]*")
#: Azure's levels that need a key (`?code=` / `x-functions-key`): polyfn's `auth: key`.
KEYED_LEVELS = ("Function", "System", "Admin")


@dataclass(frozen=True)
class CsFunction:
    name: str
    file: str
    auth_level: str  # the HttpTrigger's AuthorizationLevel member, "" when not an HTTP function


def cs_files(files: dict[str, bytes]) -> list[str]:
    """The C# sources that make the function's assembly (build output folders left out)."""
    return sorted(n for n in files if n.endswith(".cs") and not re.match(r"(?:.*/)?(?:bin|obj)/", n))


def functions(files: dict[str, bytes]) -> list[CsFunction]:
    found = []
    for path in cs_files(files):
        src = _COMMENTS.sub("", files[path].decode("utf-8", "replace"))
        marks = list(_NAME.finditer(src))
        for i, m in enumerate(marks):
            body = src[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(src)]
            auth = _AUTH.search(body) if "HttpTrigger" in body else None
            level = auth.group(1) if auth else ("Function" if "HttpTrigger" in body else "")
            found.append(CsFunction(m.group(1), path, level))
    return found


def is_dotnet(files: dict[str, bytes]) -> bool:
    """Whether the upload is C# Azure functions (and nothing polyfn would run otherwise decides)."""
    return bool(functions(files))


def detect(files: dict[str, bytes], flavor: str | None, handler: str | None) -> tuple[str, str, str, str]:
    """(runtime, flavor, handler, why) for a C# upload; `handler` is a `[FunctionName]`."""
    if flavor not in (None, FLAVOR):
        raise DeployError("invalid_spec", f"flavor={flavor!r} does not exist for C#: polyfn runs C# Azure Functions "
                          "(flavor azure)")
    fns = functions(files)
    names = [f.name for f in fns]
    if not fns:
        raise DeployError("handler_not_found", "no C# function found: looked for a static method with "
                          "[FunctionName(\"NAME\")] in " + (", ".join(cs_files(files)) or "no .cs file"))
    if handler:
        if handler not in names:
            raise DeployError("handler_not_found", f"no [FunctionName(\"{handler}\")] in the C# code; it declares "
                              + ", ".join(names))
        fn = next(f for f in fns if f.name == handler)
        return RUNTIME, FLAVOR, handler, f"[FunctionName(\"{handler}\")] in {fn.file}"
    if len(set(names)) > 1:
        raise DeployError("ambiguous_handler", "several C# functions (" + ", ".join(names) + "): deploy each one "
                          "with --handler " + " or --handler ".join(names))
    return RUNTIME, FLAVOR, fns[0].name, f"[FunctionName(\"{fns[0].name}\")] in {fns[0].file} (Azure C#)"


def auth_for(files: dict[str, bytes], handler: str) -> str | None:
    """polyfn's `auth` for the function's AuthorizationLevel (`key` for Function/System/Admin, `anonymous`
    for Anonymous/User), None for a function without an HTTP trigger."""
    fn = next((f for f in functions(files) if f.name == handler), None)
    if fn is None or not fn.auth_level:
        return None
    return "key" if fn.auth_level in KEYED_LEVELS else "anonymous"
