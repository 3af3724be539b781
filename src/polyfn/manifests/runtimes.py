"""Vendor runtime names → polyfn (runtime, flavor): one table for the Lambda API and every definition file.

Vendors name a language version (`python3.12`, `nodejs20.x`, `Python3.10`, `Nodejs16.13`); polyfn runs
the code with its own Python (3.11+) or Node (20+), so any version of a supported language maps to it.
A flavor or runtime that this server does not have is reported by `resolve` with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyfn import model

LAMBDA_RUNTIMES = ("python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
                   "nodejs18.x", "nodejs20.x", "nodejs22.x")

class UnsupportedRuntime(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    runtime: str  # polyfn runtime
    flavor: str  # polyfn flavor
    note: str = ""  # said to the user at deploy time


def language(vendor_runtime: str) -> str | None:
    """'python' or 'node' from any vendor's runtime string, else None."""
    r = vendor_runtime.strip().lower()
    if re.match(r"^python\s*-?3(\.\d+)?(\.x)?$", r) or r in ("python", "python3", "py3"):
        return "python"
    if re.match(r"^(nodejs|node)\s*-?\d+(\.\d+)*(\.x)?$", r) or r in ("node", "nodejs", "custom.debian10-node"):
        return "node"
    return None


def resolve(flavor: str, lang: str, vendor_runtime: str = "") -> Target:
    """The polyfn runtime and flavor for code of `flavor` written in `lang`, or UnsupportedRuntime."""
    runtime = lang
    if runtime not in model.RUNTIMES:
        raise UnsupportedRuntime(
            f"runtime {vendor_runtime or lang!r} needs polyfn's {lang} runtime, which this server does not have "
            f"(it has: {', '.join(model.RUNTIMES)})")
    if flavor in model.FLAVORS:
        return Target(runtime, flavor)
    raise UnsupportedRuntime(f"flavor {flavor!r} is not supported by this server (it has: {', '.join(model.FLAVORS)})")


def lambda_target(runtime: str) -> Target:
    """A Lambda `Runtime` value → Target; unknown or non-Python/Node runtimes name the supported list."""
    lang = language(runtime) if runtime in LAMBDA_RUNTIMES else None
    if lang is None:
        raise UnsupportedRuntime(
            f"Value {runtime!r} at 'runtime' failed to satisfy constraint: polyfn supports the runtimes "
            f"{', '.join(supported_lambda_runtimes())}")
    return resolve("aws", lang, runtime)


def supported_lambda_runtimes() -> list[str]:
    langs = {"python"} | ({"node"} if "node" in model.RUNTIMES else set())
    return [r for r in LAMBDA_RUNTIMES if language(r) in langs]
