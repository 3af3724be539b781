"""Firebase's function options: accepted so unmodified code imports and runs; polyfn's settings apply."""

from __future__ import annotations

from typing import Any


def set_global_options(**_kwargs: Any) -> None:
    """No-op: memory, region, timeouts … are polyfn function settings (polyfn deploy --memory …)."""


class CorsOptions:
    def __init__(self, cors_origins: Any = None, cors_methods: Any = None) -> None:
        self.cors_origins = cors_origins
        self.cors_methods = cors_methods


class SupportedRegion:
    US_CENTRAL1 = "us-central1"
    EUROPE_WEST1 = "europe-west1"
    ASIA_EAST1 = "asia-east1"


class MemoryOption:
    MB_128, MB_256, MB_512, GB_1, GB_2, GB_4 = 128, 256, 512, 1024, 2048, 4096
