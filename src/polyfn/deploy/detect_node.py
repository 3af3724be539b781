"""Infer runtime, flavor and handler for Node.js code and plain HTTP servers (the `node` and `http` runtimes).

Rules are data, checked in order; the first that matches a candidate file wins. Vendor project files say the
vendor when the code alone cannot (`exports.handler = function (event, context, callback)` is both AWS
and Alibaba FC): `s.yaml` (Serverless Devs, Alibaba FC), `serverless.yml` (`provider: aws` /
`component: scf` for Tencent), `function.json` (Azure), `template.yml` with `Aliyun::Serverless`.

An `http` function's handler is its command line. Go code is built at deploy time (`deploy/build.py`)
and its handler is `@go`, the program built from the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyfn.deploy.errors import DeployError

JS_EXT = (".js", ".cjs", ".mjs")
PREFERRED = ("index", "handler", "main", "function", "app", "func", "server")
NODE_FLAVORS = ("native", "aws", "gcp", "azure", "aliyun", "tencent", "openfaas", "kubeless", "openwhisk", "wechat")
HTTP_FLAVORS = ("knative",)
GO_HANDLER = "@go"

_ARGS = r"\(\s*([\w$]*)\s*(?:,\s*([\w$]*)\s*)?(?:,\s*([\w$]*)\s*)?\)"
_FN = rf"(?:async\s+)?(?:function\s*[\w$]*\s*{_ARGS}|{_ARGS}\s*=>|([\w$]+)\s*=>)"


@dataclass(frozen=True)
class Rule:
    pattern: str  # regex on the source; group "name" (if any) is the export
    flavor: str
    export: str = ""  # fixed export name when the pattern has no "name" group
    what: str = ""  # for the error message: what this rule looks for


RULES = (
    Rule(r"require\(\s*['\"]wx-server-sdk['\"]\s*\)[\s\S]*exports\.(?P<name>main)\s*=", "wechat", what="`require('wx-server-sdk')` + `exports.main` (wechat)"),
    Rule(r"functions\.http\(\s*['\"](?P<name>[\w$-]+)['\"]", "gcp", what="`functions.http('NAME', fn)` (gcp)"),
    Rule(r"require\(\s*['\"]firebase-functions[\w/]*['\"]\s*\)[\s\S]*exports\.(?P<name>[\w$]+)\s*=\s*[\w$.]*on(?:Call|Request)\(",
         "gcp", what="`exports.NAME = onCall(...)` from 'firebase-functions' (gcp, Firebase callable)"),
    Rule(r"require\(\s*['\"]@azure/functions['\"]\s*\)[\s\S]*app\.(?:http|get|post|put|patch|deleteRequest|timer|storageQueue|storageBlob)\(\s*['\"](?P<name>[\w$-]+)['\"]",
         "azure", what="`app.http('NAME', {handler})` from '@azure/functions' (azure v4)"),
    Rule(r"exports\.(?P<name>main_handler)\s*=", "tencent", what="`exports.main_handler` (tencent)"),
    Rule(r"module\.exports\s*=\s*(?:async\s+)?function\s*[\w$]*\s*\(\s*context\s*,\s*req\b", "azure", "default",
         "`module.exports = async function (context, req)` (azure)"),
    Rule(r"exports\.(?P<name>[\w$]+)\s*=\s*(?:async\s+)?(?:function\s*[\w$]*\s*)?\(\s*req\w*\s*,\s*res\w*\s*\)", "gcp",
         what="`exports.NAME = (req, res) => ...` (gcp)"),
    Rule(r"module\.exports\s*=\s*(?:async\s+)?(?:function\s*[\w$]*\s*)?\(\s*event\s*,\s*context\s*\)", "openfaas", "default",
         "`module.exports = async (event, context)` (openfaas)"),
    Rule(r"module\.exports\s*=\s*\{\s*(?P<name>[\w$]+)\s*[,:}]", "kubeless", what="`module.exports = { FUNC }` (kubeless)"),
    Rule(r"(?:^|\n)\s*(?:async\s+)?function\s+(?P<name>main)\s*\(\s*(?:params|args)?\s*\)", "openwhisk",
         what="`function main(params)` (openwhisk)"),
    Rule(r"exports\.(?P<name>main)\s*=", "tencent", what="`exports.main` (tencent)"),
    Rule(r"exports\.(?P<name>handler)\s*=", "aws", what="`exports.handler` (aws; aliyun with s.yaml)"),
    Rule(r"exports\.(?P<name>[\w$]+)\s*=\s*" + _FN, "aws", what="`module.exports.NAME = async (event, context)` (aws)"),
)


def _vendor_from_project(files: dict[str, bytes]) -> str | None:
    def text(name: str) -> str:
        return files.get(name, b"").decode("utf-8", "replace")

    if "s.yaml" in files or "s.yml" in files or "Aliyun::Serverless" in text("template.yml") + text("template.yaml"):
        return "aliyun"
    sls = text("serverless.yml") or text("serverless.yaml")
    if sls:
        if re.search(r"component:\s*scf|provider:\s*\n\s*name:\s*tencent|provider:\s*tencent", sls):
            return "tencent"
        if re.search(r"provider:\s*\n\s*name:\s*aws|provider:\s*aws", sls):
            return "aws"
    if "function.json" in files:
        return "azure"
    return None


def js_candidates(files: dict[str, bytes]) -> list[str]:
    """Top-level JavaScript files, well-known names first (`package.json` `main` before all)."""
    top = [n for n in files if n.endswith(JS_EXT) and "/" not in n]
    main = re.search(r'"main"\s*:\s*"(?:\./)?([^"]+)"', files.get("package.json", b"").decode("utf-8", "replace"))
    first = [main.group(1)] if main and main.group(1) in files else []
    stems = {n.rsplit(".", 1)[0]: n for n in top}
    preferred = [stems[p] for p in PREFERRED if p in stems]
    return list(dict.fromkeys(first + preferred + sorted(top)))


def _strip_comments(src: str) -> str:
    return re.sub(r"/\*[\s\S]*?\*/|(?<![:'\"\\])//[^\n]*", "", src)


def detect_js(files: dict[str, bytes], flavor: str | None) -> tuple[str, str] | None:
    vendor = _vendor_from_project(files)
    first: tuple[str, str] | None = None
    for name in js_candidates(files):
        src = _strip_comments(files[name].decode("utf-8", "replace"))
        stem = name.rsplit(".", 1)[0]
        for rule in RULES:
            m = re.search(rule.pattern, src)
            if not m:
                continue
            export = m.groupdict().get("name") or rule.export
            found = rule.flavor
            if vendor and found in ("aws", "tencent") and vendor in ("aliyun", "tencent", "aws"):
                found = vendor  # the project file settles `exports.handler`-style ambiguity
            if flavor and flavor != found:
                first = first or (flavor, f"{stem}.{export}")
                continue
            return found, f"{stem}.{export}"
    return first  # the user named the flavor: the first export of a known shape is the handler


def _is_go_main(files: dict[str, bytes]) -> bool:
    return any(n.endswith(".go") and "/" not in n and re.search(rb"^\s*package\s+main\b", files[n], re.M)
               for n in files)


def detect_http(files: dict[str, bytes]) -> str | None:
    """The command that starts a plain HTTP server in `files`, or None."""
    if _is_go_main(files):
        return GO_HANDLER
    for name, cmd in (("server.py", "python3 server.py"), ("app.py", "python3 app.py"), ("main.py", "python3 main.py"),
                      ("server.js", "node server.js"), ("app.js", "node app.js"), ("index.js", "node index.js")):
        src = files.get(name, b"")
        if src and re.search(rb"PORT", src) and re.search(rb"listen|serve_forever|run\(|ListenAndServe", src):
            return cmd
    if "Procfile" in files:
        m = re.search(r"^web:\s*(.+)$", files["Procfile"].decode("utf-8", "replace"), re.M)
        if m:
            return m.group(1).strip()
    return None


def has_node_or_http_code(files: dict[str, bytes]) -> bool:
    """Whether Node.js or plain-HTTP detection is worth trying (when Python detection found nothing)."""
    if any(n.endswith((*JS_EXT, ".go")) or n in ("package.json", "Procfile") for n in files if "/" not in n):
        return True
    return detect_http(files) is not None


def infer_runtime(files: dict[str, bytes], flavor: str | None) -> str | None:
    """The runtime when the code or the flavor settles it; None lets Python detection try first."""
    if flavor in HTTP_FLAVORS:
        return "http"
    if flavor == "wechat":
        return "node"
    has_py = any(n.endswith(".py") and "/" not in n for n in files)
    if not has_py and has_node_or_http_code(files):
        return "node" if any(n.endswith(JS_EXT) for n in files if "/" not in n) and not _is_go_main(files) else "http"
    return None


def detect(files: dict[str, bytes], runtime: str | None, flavor: str | None,
           handler: str | None) -> tuple[str, str, str]:
    """(runtime, flavor, handler) for Node.js or plain-HTTP code, honouring what the user gave."""
    if runtime in (None, "node") and flavor not in HTTP_FLAVORS:
        if flavor and flavor not in NODE_FLAVORS:
            raise DeployError("invalid_spec", f"flavor={flavor!r} does not exist for Node.js: use one of {', '.join(NODE_FLAVORS)}")
        if handler and (runtime == "node" or flavor or _js_file(files, handler)):
            return "node", flavor or (detect_js(files, None) or ("aws", ""))[0], handler
        found = None if handler else detect_js(files, flavor)
        if found:
            return "node", found[0], found[1]
        if runtime == "node" or flavor in NODE_FLAVORS:
            raise _not_found(files, flavor)
    if runtime in (None, "http"):
        if flavor and flavor not in HTTP_FLAVORS:
            raise DeployError("invalid_spec", f"flavor={flavor!r} does not exist for the http runtime: use knative")
        cmd = handler or detect_http(files)
        if cmd:
            return "http", "knative", cmd
        if runtime == "http":
            raise DeployError("handler_not_found", "cannot tell how to start the HTTP server: looked for Go `package main` "
                              "files, server.py/app.py/server.js/app.js reading PORT, and a Procfile `web:` line. "
                              "Say it with --handler 'COMMAND ARGS' (it must listen on $PORT).")
    raise _not_found(files, flavor)


def _not_found(files: dict[str, bytes], flavor: str | None) -> DeployError:
    where = ", ".join(js_candidates(files)) or "no top-level .js file"
    looked = "; ".join(r.what for r in RULES if r.what and (not flavor or r.flavor == flavor))
    return DeployError(
        "handler_not_found",
        f"cannot tell which function to run: looked in {where} for {looked or 'the ' + str(flavor) + ' convention'}; "
        "and for a plain HTTP server (Go `package main`, a server reading $PORT). "
        "Say it with --handler FILE.EXPORT and --flavor (or --runtime http --handler 'COMMAND').",
    )


def _js_file(files: dict[str, bytes], handler: str) -> bool:
    stem = handler.rpartition(".")[0]
    return any(n in files for n in [stem + ext for ext in JS_EXT] + [stem, stem + "/index.js"])


def check_handler(files: dict[str, bytes], runtime: str, handler: str) -> None:
    """Deploy-time check that the handler's file exists (Node), or the command's program does (http)."""
    if runtime == "node":
        stem, _, export = handler.rpartition(".")
        if not _js_file(files, handler):
            shown = ", ".join(sorted(n for n in files if n.endswith(JS_EXT))[:10]) or "none"
            raise DeployError("module_not_found",
                              f"handler file {stem!r} not found: expected {stem}.js (JavaScript files in the upload: {shown})")
        name = next(n for n in [stem + ext for ext in JS_EXT] + [stem, stem + "/index.js"] if n in files)
        src = _strip_comments(files[name].decode("utf-8", "replace"))
        # A name that never appears in the file cannot be its export (dynamic exports still mention it).
        if export != "default" and not re.search(rf"(?<![\w$]){re.escape(export)}(?![\w$])", src):
            raise DeployError("handler_not_found",
                              f"{name} does not define {export!r}: the handler {handler} means `exports.{export} = ...` "
                              f"in {name} (use {stem}.default for `module.exports = function ...`)")
    elif runtime == "http" and handler == GO_HANDLER and not _is_go_main(files):
        raise DeployError("module_not_found", "handler @go needs Go files with `package main` in the upload")
