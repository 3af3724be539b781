"""The body of a deploy request, as every deploying route reads it (`/v1/functions`, `/v1/sites`): a JSON spec
with inline files, or a multipart form with `spec` and a zip in `code`."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import Request

from polyfn.deploy import archive
from polyfn.deploy.errors import DeployError
from polyfn.deploy.service import spec_from_json
from polyfn.errors import PolyfnError


async def read_deploy(request: Request, max_size: int, max_files: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Parse either a JSON body with inline files or a multipart form with `spec` and a zip in `code`."""
    ct = request.headers.get("content-type", "")
    if ct.startswith("multipart/form-data"):
        form = await request.form()
        spec_raw = form.get("spec")
        fields = spec_from_json(spec_raw if isinstance(spec_raw, str) else (await spec_raw.read() if spec_raw else b"{}"))
        code = form.get("code")
        if code is None or isinstance(code, str):
            raise DeployError("invalid_request", "multipart deploy needs a `code` file (a zip archive)")
        data = await code.read()
        if len(data) > max_size:
            raise DeployError("code_too_large", f"the archive is {len(data)} bytes; the limit is {max_size}", 413)
        return fields, archive.files_from_zip(data, max_size, max_files)
    if "json" in ct or not ct:
        body = await request.body()
        fields = spec_from_json(body or b"{}")
        files: dict[str, bytes] = {}
        inline = fields.pop("files", None) or {}
        inline64 = fields.pop("files_base64", None) or {}
        if not isinstance(inline, dict) or not isinstance(inline64, dict):
            raise DeployError("invalid_request", "`files` and `files_base64` must be objects of path → content")
        for path, text in inline.items():
            if not isinstance(text, str):
                raise DeployError("invalid_request", f"files[{path!r}] must be a string")
            files[path] = text.encode()
        for path, b64 in inline64.items():
            try:
                files[path] = base64.b64decode(b64, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise DeployError("invalid_request", f"files_base64[{path!r}] is not valid base64") from None
        return fields, files
    raise PolyfnError(415, "unsupported_media_type",
                   f"deploy with application/json (inline files) or multipart/form-data (zip), not {ct!r}")


