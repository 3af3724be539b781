"""The one table of error codes (`polyfn.errors.CODES`): every refusal written in the source uses a code from it,
with the status the table gives. A new code goes into the table (and docs/api.md) or this test fails."""

from __future__ import annotations

import re
from pathlib import Path

from polyfn.errors import CODES

SRC = Path(__file__).resolve().parents[2] / "src" / "polyfn"
RAISES = re.compile(r'\b(?:platform_error|ApiError|PolyfnError|Rejected)\(\s*(\d{3}),\s*"([a-z_]+)"')
SPEC = re.compile(r'\bSpecError\((?:[^()]|\([^()]*\))*?,\s*(?:code=)?"([a-z_]+)",?\s*\)', re.S)  # 400 codes
DEPLOY = re.compile(r'\bDeployError\(\s*"([a-z_]+)",(?:[^()]|\([^()]*\))*?(?:,\s*(\d{3}))?\)', re.S)


def _uses() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        where = str(path.relative_to(SRC))
        out += [(where, int(status), code) for status, code in RAISES.findall(text)]
        out += [(where, int(status or 400), code) for code, status in DEPLOY.findall(text)]
        out += [(where, 400, code) for code in SPEC.findall(text)]
    return out


def test_every_refusal_uses_a_code_of_the_table_with_its_status() -> None:
    uses = _uses()
    assert len(uses) > 80  # the pattern still finds the raises
    def allowed(code: str) -> tuple[int, ...]:
        status = CODES[code][0] if code in CODES else ()
        return status if isinstance(status, tuple) else (status,)

    wrong = [(where, status, code, CODES.get(code)) for where, status, code in uses if status not in allowed(code)]
    assert wrong == []


def test_the_users_table_names_the_common_codes() -> None:
    doc = (SRC.parents[1] / "docs" / "api.md").read_text()
    for code in ("function_not_found", "payload_too_large", "shutting_down", "function_timeout", "function_crashed",
                 "too_many_requests", "code_unavailable", "queue_unavailable"):
        assert f"`{code}`" in doc
        assert code in CODES
