"""Apps, users and identities as plain data, and the validation of an app's settings (pure).

An app's settings are one JSON document (`AppConfig`), so a new setting needs no migration. Every error
names the setting, the value and what is allowed.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

#: an app id is WeChat's `env` and a Firebase project id: it appears in URLs (`/app/{id}/…`) and in
#: `cloud://{id}.{bucket}/…` file ids, so it is kept to URL- and DNS-safe characters.
APP_ID_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$")
FUNCTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
COLLECTION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: names a new app may not take: they would shadow the node's own top-level paths in Firebase's callable
#: URLs (`/{project}/{region}/{function}`)
RESERVED_IDS = frozenset({"fn", "v1", "app", "apps", "api", "console", "metrics", "healthz", "function",
                          "system", "sites", "sdk", "async-function", "admin", "polyfn"})

PROVIDERS = ("anonymous", "password", "custom")
MAX_ORIGINS = 100


class AppError(Exception):
    """A request the service refuses: HTTP status, stable code, message, extra headers (Retry-After …)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ConfigError(ValueError):
    """A setting of an app is invalid; the message names it."""


class Rule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Who may read and write: each side is a rule expression (`rules.py`), e.g. `doc._openid == auth.openid`."""

    read: str
    write: str


class AppConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    origins: list[str] = []  # browser origins allowed to call the app (CORS); "*" for any
    anonymous: bool = True  # sign-in methods
    password: bool = True
    custom: str | None = None  # the function that turns what the client sends into a user (`wx.login` code …)
    appid: str = ""  # APPID functions see (a mini-program's appid); "" → the app id
    token_ttl: int = 3600  # seconds an access token lives
    refresh_ttl: int = 30 * 24 * 3600  # seconds a session lives without being refreshed
    signin_rate: float = 0.1  # failed password sign-ins per second per account and per client address …
    signin_burst: int = 5  # … and how many may come at once before the limit applies
    signup_rate: float = 20.0  # new users per second per client address (anonymous and password) …
    signup_burst: int = 2000  # … and at once
    bucket: str = ""  # storage bucket of uploadFile; "" → `app-{id}`
    max_upload: int = 10 * 1024 * 1024  # bytes of one uploadFile (the POST policy's content-length-range)
    files: Rule = Rule(read="auth != null", write="doc._openid == auth.openid")
    rules: dict[str, Rule] = {}  # collection → rule; collections not named get `default_rule`
    default_rule: Rule = Rule(read="doc._openid == auth.openid", write="doc._openid == auth.openid")


class App(msgspec.Struct, kw_only=True):
    id: str
    config: AppConfig
    created_at: float = 0.0
    updated_at: float = 0.0
    namespace: str = "default"  # the namespace that owns it (its users, data, files and functions: tenancy.py)

    @property
    def appid(self) -> str:
        return self.config.appid or self.id

    @property
    def bucket(self) -> str:
        return self.config.bucket or f"app-{self.id}"

    def function(self, name: str) -> str:
        """The held name of the app's namespace's function `name` (what the app's clients call)."""
        return name if self.namespace == "default" else f"{self.namespace}~{name}"

    @property
    def owner(self) -> str:
        """The owner of the app's own storage key (its users' file grants), in the app's namespace."""
        return self.function(f"app:{self.id}")

    def rule(self, collection: str) -> Rule:
        return self.config.rules.get(collection) or self.config.default_rule


class User(msgspec.Struct, kw_only=True):
    app: str
    uid: str
    provider: str  # anonymous | password | custom
    email: str | None = None
    password_hash: str | None = None
    openid: str | None = None  # WeChat openid (custom sign-in); None → the uid serves as the openid
    unionid: str | None = None
    claims: dict[str, Any] = {}  # extra claims a custom sign-in function returned (roles …)
    created_at: float = 0.0
    last_sign_in_at: float | None = None
    disabled: bool = False

    def public(self) -> dict[str, Any]:
        """What a client or the admin API may see (never the password hash)."""
        return {"uid": self.uid, "provider": self.provider, "email": self.email, "openid": self.openid or self.uid,
                "unionid": self.unionid or "", "claims": self.claims, "created_at": self.created_at,
                "last_sign_in_at": self.last_sign_in_at, "disabled": self.disabled}


class Session(msgspec.Struct, kw_only=True):
    """One sign-in: its refresh token (only the SHA-256 of its secret is kept) and whether it was revoked."""

    id: str
    app: str
    uid: str
    refresh_sha256: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None


class Identity(msgspec.Struct, kw_only=True, frozen=True):
    """A verified caller: what functions and rules learn about the user behind a token.

    `openid` is WeChat's name for the user and what documents are stamped with (`_openid`): the openid a
    custom sign-in returned, else the uid. `token` is the access token itself, so a function can call
    another on the user's behalf (wx-server-sdk's `callFunction`), never more than the user could."""

    app: str
    appid: str
    uid: str
    openid: str
    provider: str
    unionid: str = ""
    email: str = ""
    claims: dict[str, Any] = {}
    exp: float = 0.0
    session: str = ""
    token: str = ""

    def rule_auth(self) -> dict[str, Any]:
        """`auth` as security rules see it (`rules.py`)."""
        return {"uid": self.uid, "openid": self.openid, "unionid": self.unionid, "provider": self.provider,
                "email": self.email, "claims": self.claims}

    def wire(self) -> dict[str, Any]:
        """The identity as instances receive it in the `Invoke` frame (a plain map)."""
        return {"app": self.app, "appid": self.appid, "uid": self.uid, "openid": self.openid,
                "unionid": self.unionid, "email": self.email, "provider": self.provider, "claims": self.claims,
                "token": self.token}


def parse_config(raw: dict[str, Any], base: AppConfig | None = None) -> AppConfig:
    """`raw` merged over `base` (or the defaults), validated. Raises ConfigError naming the setting."""
    merged = msgspec.to_builtins(base) if base is not None else {}
    merged.update(raw)
    try:
        cfg = msgspec.convert(merged, AppConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"invalid app setting: {e}") from None
    validate(cfg)
    return cfg


def validate(cfg: AppConfig) -> None:
    from polyfn.apps.rules import RuleError, compile_rule

    if len(cfg.origins) > MAX_ORIGINS:
        raise ConfigError(f"origins: {len(cfg.origins)} given; at most {MAX_ORIGINS}")
    for o in cfg.origins:
        if o != "*" and not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+$", o):
            raise ConfigError(f"origins: {o!r} is not an origin (scheme://host[:port], no path) or '*'")
    if cfg.custom is not None and not FUNCTION_RE.match(cfg.custom):
        raise ConfigError(f"custom={cfg.custom!r} is not a function name")
    for key, low, high in (("token_ttl", 60, 7 * 24 * 3600), ("refresh_ttl", 300, 400 * 24 * 3600),
                           ("max_upload", 1, 5 * 1024**3), ("signin_burst", 1, 10_000), ("signup_burst", 1, 10**6)):
        value = getattr(cfg, key)
        if not low <= value <= high:
            raise ConfigError(f"{key}={value} is out of range: {low}..{high}")
    for key in ("signin_rate", "signup_rate"):
        if not 0 < getattr(cfg, key) <= 10_000:
            raise ConfigError(f"{key}={getattr(cfg, key)} is out of range: more than 0, at most 10000 per second")
    if cfg.bucket and not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", cfg.bucket):
        raise ConfigError(f"bucket={cfg.bucket!r} is not a valid bucket name")
    rules = [("files", cfg.files), ("default_rule", cfg.default_rule)]
    rules += [(f"rules.{name}", r) for name, r in cfg.rules.items()]
    for name, _ in rules[2:]:
        if not COLLECTION_RE.match(name[len("rules."):]):
            raise ConfigError(f"{name}: not a collection name")
    for name, rule in rules:
        for side in ("read", "write"):
            try:
                compile_rule(getattr(rule, side))
            except RuleError as e:
                raise ConfigError(f"{name}.{side}: {e}") from None


def check_app_id(app_id: str) -> None:
    if not APP_ID_RE.match(app_id):
        raise ConfigError(f"app id {app_id!r} is invalid: 3-64 characters, lower-case letters, digits and '-', "
                          "starting with a letter (it is the `env` of wx.cloud.init)")
    if app_id in RESERVED_IDS:
        raise ConfigError(f"app id {app_id!r} is reserved (a path of the node's own); pick another")
