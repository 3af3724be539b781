"""The console's ways to run code: invoke a function from its page (whole or streamed) and deploy one from a
form (pasted code or a zip archive)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from polyfn.call import Call
from polyfn.console.frame import SECURITY_HEADERS, Pages, held, namespace, pretty, redirect
from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.gateway.asgi import StreamedResponse
from polyfn.tenancy import SEP, local, qualify

if TYPE_CHECKING:
    from polyfn.config import Settings
    from polyfn.console.sessions import ResultCache
    from polyfn.services import Activations, Deploys, FunctionStore, Invocations, LiveFunctions

DISPLAY_MAX = 16 * 1024  # bytes of a result shown inline; the rest behind "download full"


class InvokePages:
    """The invoke panel of a function's page; full results are kept in `results` for "download full"."""

    def __init__(self, *, invoker: Invocations, registry: LiveFunctions, recorder: Activations, store: FunctionStore,
                 results: ResultCache, pages: Pages):
        self.invoker = invoker
        self.registry = registry
        self.recorder = recorder
        self.store = store
        self.results = results
        self.pages = pages

    async def _form(self, request: Request) -> tuple[str, str, str]:
        """(function name, payload, why it cannot be invoked or "") of the invoke panel's form."""
        name = held(request) or ""
        payload = str((await request.form()).get("payload") or "")
        if payload.strip():
            try:
                json.loads(payload)
            except ValueError as e:
                return name, payload, f"Malformed JSON: {e}"
        return name, payload, "" if name and self.registry.get(name) is not None else \
            f"function {request.path_params['name']!r} does not exist"

    async def invoke(self, request: Request) -> Response:
        name, payload, refused = await self._form(request)
        if refused:
            return self.pages.render(request, "_invoke_result.html", 200, error=refused, out=None)
        body = payload.encode()
        out = await self.invoker.call(Call(name, "event", "console", headers=[("content-type", "application/json")],
                                           body=body, content_type="application/json"))
        ct = next((v.decode("latin-1") for k, v in out.headers if k == b"content-type"), "application/octet-stream")
        act = None
        if out.activation_id:
            self.results.put(out.activation_id, out.body, ct)
            await self.recorder.flush()
            act = await self.store.get_activation(out.activation_id)
        text = out.body[:DISPLAY_MAX].decode("utf-8", "replace")
        return self.pages.render(request, "_invoke_result.html", error="", out={
            "status": out.status, "activation_id": out.activation_id, "cold": out.cold, "size": len(out.body),
            "text": text if len(out.body) > DISPLAY_MAX else pretty(text), "truncated": len(out.body) > DISPLAY_MAX,
            "content_type": ct}, act=act)

    async def invoke_stream(self, request: Request) -> Response:
        """The invoke panel with "stream" ticked: the function's response relayed as it comes (console.js shows
        the pieces as they arrive); errors as plain text."""
        name, payload, refused = await self._form(request)
        if refused:
            return Response(refused, status_code=400, headers=SECURITY_HEADERS)
        out = await self.invoker.call(Call(name, "event", "console", "POST", "/", "",
                                           [("content-type", "application/json")], payload.encode(),
                                           "application/json", stream=True))
        if out.stream is not None:
            return StreamedResponse(out)
        return Response(out.body, status_code=out.status, headers={k.decode(): v.decode() for k, v in out.headers})


class DeployPages:
    def __init__(self, *, settings: Settings, deployer: Deploys, pages: Pages):
        self.settings = settings
        self.deployer = deployer
        self.pages = pages

    async def deploy_page(self, request: Request) -> Response:
        return self.pages.render(request, "deploy.html", active="deploy", error="", form={})

    async def deploy(self, request: Request) -> Response:
        s = self.settings
        form = await request.form()
        values = {k: str(form.get(k) or "").strip() for k in ("name", "flavor", "handler", "filename")}
        code = str(form.get("code") or "")
        upload = form.get("archive")
        fields: dict[str, Any] = {"name": qualify(namespace(request), values["name"])}
        if values["flavor"]:
            fields["flavor"] = values["flavor"]
        if values["handler"]:
            fields["handler"] = values["handler"]
        try:
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read()
                if len(data) > s.max_code_size:
                    raise DeployError("code_too_large", f"the archive is {len(data)} bytes; the limit is "
                                      f"{s.max_code_size}", 413)
                files = archive.files_from_zip(data, s.max_code_size, s.max_code_files)
            elif code.strip():
                files = {values["filename"] or "handler.py": code.replace("\r\n", "\n").encode()}
            else:
                raise DeployError("invalid_request", "upload a zip archive or paste the code of one file")
            if SEP in values["name"]:
                raise DeployError("invalid_name", f"function name {values['name']!r}: use a-z, 0-9 and '-'")
            info, _created, _detected = await self.deployer.deploy(fields, files)
        except DeployError as e:
            return self.pages.render(request, "deploy.html", 400, active="deploy", error=f"{e.code}: {e.message}",
                                     form={**values, "code": code})
        return redirect(f"/console/functions/{quote(local(info.name))}")
