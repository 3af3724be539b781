"""The fields every state type shares, checked and compiled at creation: paths (and paths or intrinsic functions),
payload templates, error names, and Retry and Catch (into `Retrier` and `Catcher`). `FieldChecker` collects each
problem with its location; `definition._Validator`, which checks whole states and machines, is one.
"""

from __future__ import annotations

from typing import Any

from polyfn.workflows.dataflow import Template, TemplateError
from polyfn.workflows.errors import ALL, KNOWN, Problem
from polyfn.workflows.jsonpath import Path, PathSyntaxError, compile_path, compile_reference

ROOT = compile_path("$")


class Retrier:
    __slots__ = ("backoff_rate", "error_equals", "interval", "jitter", "max_attempts", "max_delay")

    def __init__(self, raw: dict[str, Any]):
        self.error_equals: list[str] = raw["ErrorEquals"]
        self.interval: float = raw.get("IntervalSeconds", 1)
        self.max_attempts: int = raw.get("MaxAttempts", 3)
        self.backoff_rate: float = raw.get("BackoffRate", 2.0)
        self.max_delay: float | None = raw.get("MaxDelaySeconds")
        self.jitter: str = raw.get("JitterStrategy", "NONE")


class Catcher:
    __slots__ = ("error_equals", "next", "result_path")

    def __init__(self, raw: dict[str, Any], result_path: Path | None):
        self.error_equals: list[str] = raw["ErrorEquals"]
        self.next: str = raw["Next"]
        self.result_path = result_path


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_positive_int(v: Any) -> bool:
    return is_int(v) and v > 0


class FieldChecker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, code: str, loc: str, message: str) -> None:
        self.problems.append(Problem(code, loc, message))

    def path(self, raw: dict[str, Any], field: str, loc: str, reference: bool = False,
             absent: Path | None = ROOT) -> Path | None:
        """A path field: `absent` when missing, None for JSON null, else the compiled path."""
        if field not in raw:
            return absent
        value = raw[field]
        if value is None:
            return None
        try:
            return compile_reference(value) if reference else compile_path(value)
        except PathSyntaxError as e:
            self.problem("INVALID_JSON_PATH", f"{loc}/{field}", f"Invalid JSONPath in '{field}': {e}")
            return absent

    def path_or_intrinsic(self, raw: dict[str, Any], field: str, loc: str) -> Any:
        if field not in raw:
            return None
        from polyfn.workflows.intrinsics import IntrinsicSyntaxError, compile_call, is_intrinsic

        value = raw[field]
        try:
            return compile_call(value) if is_intrinsic(value) else compile_path(value)
        except (PathSyntaxError, IntrinsicSyntaxError) as e:
            self.problem("INVALID_JSON_PATH", f"{loc}/{field}", f"Invalid '{field}': {e}")
            return None

    def template(self, raw: Any, loc: str, object_only: bool = False) -> Template | None:
        if object_only and not isinstance(raw, dict):
            self.problem("SCHEMA_VALIDATION_FAILED", loc, "must be a JSON object")
            return None
        try:
            return Template(raw)
        except TemplateError as e:
            self.problem("INVALID_JSON_PATH" if "JSONPath" in e.message else "SCHEMA_VALIDATION_FAILED",
                         loc + e.pointer, e.message)
            return None

    def error_names(self, names: Any, loc: str) -> bool:
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.problem("SCHEMA_VALIDATION_FAILED", loc, "ErrorEquals must be a non-empty array of error names")
            return False
        ok = True
        for n in names:
            if n.startswith("States.") and n not in KNOWN:
                self.problem("SCHEMA_VALIDATION_FAILED", loc, f"unknown error name {n!r} (the States.* names are "
                             f"{', '.join(sorted(KNOWN))})")
                ok = False
        if ALL in names and len(names) > 1:
            self.problem("SCHEMA_VALIDATION_FAILED", loc, "States.ALL must appear alone in ErrorEquals")
            ok = False
        return ok

    def handlers(self, raw: Any, loc: str, what: str, allowed: set[str]) -> list[tuple[str, dict[str, Any], bool]]:
        """The Retriers or Catchers of a state: (location, object, valid so far) for each object, with the
        checks both share (known fields, ErrorEquals, States.ALL last)."""
        if not isinstance(raw, list):
            self.problem("SCHEMA_VALIDATION_FAILED", loc, f"{'Retry' if what == 'Retrier' else 'Catch'} must be an "
                         f"array of {what}s")
            return []
        out = []
        for i, r in enumerate(raw):
            where = f"{loc}/{i}"
            if not isinstance(r, dict):
                self.problem("SCHEMA_VALIDATION_FAILED", where, f"a {what} must be an object")
                continue
            for k in sorted(set(r) - allowed - {"ErrorEquals", "Comment"}):
                self.problem("SCHEMA_VALIDATION_FAILED", f"{where}/{k}", f"Field '{k}' is not supported in a {what}")
            ok = self.error_names(r.get("ErrorEquals"), f"{where}/ErrorEquals")
            if isinstance(r.get("ErrorEquals"), list) and ALL in r["ErrorEquals"] and i != len(raw) - 1:
                self.problem("SCHEMA_VALIDATION_FAILED", f"{where}/ErrorEquals", f"a {what} with States.ALL must be the last")
            out.append((where, r, ok))
        return out

    def retriers(self, raw: Any, loc: str) -> list[Retrier]:
        checks = (("IntervalSeconds", is_positive_int, "a positive integer"),
                  ("MaxAttempts", lambda v: is_int(v) and 0 <= v <= 99999999, "an integer from 0"),
                  ("BackoffRate", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1.0,
                   "a number >= 1.0"),
                  ("MaxDelaySeconds", is_positive_int, "a positive integer"),
                  ("JitterStrategy", lambda v: v in ("FULL", "NONE"), "FULL or NONE"))
        out = []
        for where, r, ok in self.handlers(raw, loc, "Retrier", {field for field, _, _ in checks}):
            for field, good, what in checks:
                if field in r and not good(r[field]):
                    self.problem("SCHEMA_VALIDATION_FAILED", f"{where}/{field}", f"{field} must be {what}")
                    ok = False
            if ok:
                out.append(Retrier(r))
        return out

    def catchers(self, raw: Any, loc: str) -> list[Catcher]:
        out = []
        for where, c, ok in self.handlers(raw, loc, "Catcher", {"Next", "ResultPath"}):
            if not isinstance(c.get("Next"), str):
                self.problem("MISSING_TRANSITION_TARGET", f"{where}/Next", "a Catcher needs 'Next'")
                ok = False
            rp = self.path(c, "ResultPath", where, reference=True)
            if ok:
                out.append(Catcher(c, rp))
        return out
