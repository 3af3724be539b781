"""SQLAlchemy Core tables of the metadata and activation store.

Core (not ORM) on purpose: activations are written in batches of hundreds on the hot path, and plain
`insert()` with a list of dicts is several times faster than building ORM objects. These definitions are
what the queries use; the schema itself is created by the Alembic migrations in `migrations/versions/`,
and a test checks that both agree.

No foreign keys: activations and log lines outlive their function (a deleted function's history stays
queryable until pruned), and revisions are deleted explicitly together with their function.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

functions = Table(
    "functions",
    metadata,
    Column("name", String, primary_key=True),
    Column("current_revision", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # 0008: the highest version number ever published (version numbers are never reused, as in Lambda)
    Column("last_version", Integer, nullable=False, server_default="0"),
)

revisions = Table(
    "revisions",
    metadata,
    Column("function", String, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("spec", Text, nullable=False),  # msgspec JSON of the full FunctionSpec (defaults included)
    Column("code_sha256", String, nullable=False),
    Column("code_dir", Text, nullable=False),
    Column("deps_dir", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

# 0008: published versions (a revision frozen under a version number) and aliases (a name for a version,
# optionally with a second, weighted version). `store/versions.py` reads and writes them.
versions = Table(
    "versions",
    metadata,
    Column("function", String, primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("function", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("version", String, nullable=False),  # a version number, or "$LATEST" (the current revision)
    Column("weights", Text, nullable=False),  # JSON {version: weight}: extra versions and their shares
    Column("description", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

activations = Table(
    "activations",
    metadata,
    Column("id", String, primary_key=True),
    Column("function", String, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("trigger", String, nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("wait_ms", Float, nullable=False),
    Column("init_ms", Float, nullable=False),
    Column("run_ms", Float, nullable=False),
    Column("cold", Boolean, nullable=False),
    Column("status", String, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("result", Text, nullable=False),
    Column("error", Text, nullable=True),  # JSON object or NULL
    Column("instance", String, nullable=False),
    Column("trace_id", String, nullable=False, server_default=""),  # 0004
    Column("parent_id", String, nullable=False, server_default=""),  # 0004
    Column("init_info", Text, nullable=False, server_default=""),  # 0006
    # 0009: the activation's log lines, a JSON array of [ts, stream, line] ('' when none), and the newest
    # line's timestamp (0 when none): "the newest lines of a function" reads the partial index below.
    Column("logs", Text, nullable=False, server_default=""),
    Column("logs_end", Float, nullable=False, server_default="0"),
    Column("stream", Text, nullable=True),  # 0011: a streamed response's figures, JSON, or NULL
    Column("max_memory_mb", Float, nullable=False, server_default="0"),  # 0013
    # 0014: what usage metering bills (observe/usage.py): configured memory, request and response bytes
    Column("memory_mb", Integer, nullable=False, server_default="0"),
    Column("req_bytes", Integer, nullable=False, server_default="0"),
    Column("resp_bytes", BigInteger, nullable=False, server_default="0"),
    Index("ix_activations_function_start", "function", "start"),
    Index("ix_activations_start", "start"),
    Index("ix_activations_function_logs_end", "function", "logs_end",
          sqlite_where=text("logs != ''"), postgresql_where=text("logs != ''")),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String, primary_key=True),  # the access key id (public)
    Column("secret_sha256", String, nullable=False),  # hex SHA-256 of the secret (bearer checks)
    # 0007: the secret encrypted with the node key (Fernet), so the key can verify SigV4; NULL for keys made
    # before 0007 (bearer only); `plain:<secret>` for storage keys moved by 0007, encrypted at the next start.
    Column("secret_enc", Text, nullable=True),
    Column("scope", String, nullable=False),  # read | invoke | deploy | admin
    Column("function", String, nullable=True),  # NULL: every function
    Column("owner", String, nullable=True),  # 0007: the function whose instances hold this key (NULL: a person's)
    Column("description", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("namespace", String, nullable=False, server_default="default"),  # 0015: the namespace it acts in
    Index("ix_api_keys_secret_sha256", "secret_sha256", unique=True),
)

secrets = Table(
    "secrets",
    metadata,
    Column("name", String, primary_key=True),
    Column("ciphertext", Text, nullable=False),  # Fernet token (AES-128-CBC + HMAC) under the node key
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Object storage (src/polyfn/storage): bucket notification configs (storage triggers). Its access keys are
# API keys (`api_keys`, migration 0007 moved the old `storage_keys` there).
storage_triggers = Table(
    "storage_triggers",
    metadata,
    Column("id", String, primary_key=True),
    Column("function", String, nullable=False),
    Column("bucket", String, nullable=False),
    Column("events", String, nullable=False),  # comma-separated: created,deleted
    Column("prefix", String, nullable=False),
    Column("suffix", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_storage_triggers_bucket", "bucket"),
)

# Event triggers (cron, topics, brokers, log streams): `config` is the kind's JSON options, `state` what the
# trigger must remember across restarts (e.g. a cron trigger's last scheduled tick).
triggers = Table(
    "triggers",
    metadata,
    Column("id", String, primary_key=True),
    Column("function", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("config", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_triggers_function", "function"),
)

# 0010: the application platform's identity core (src/polyfn/apps): apps (`config` is the app's settings as
# JSON, `AppConfig`), their end users and sign-in sessions (a refresh token each: only the SHA-256 of its
# secret is kept). `apps/store.py` reads and writes them.
apps = Table(
    "apps",
    metadata,
    Column("id", String, primary_key=True),  # WeChat's env, a Firebase project id
    Column("config", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("namespace", String, nullable=False, server_default="default"),  # 0017: its owner (tenancy.py)
)

app_users = Table(
    "app_users",
    metadata,
    Column("app", String, primary_key=True),
    Column("uid", String, primary_key=True),
    Column("provider", String, nullable=False),  # anonymous | password | custom
    Column("email", String, nullable=True),  # lower-cased; unique per app
    Column("password_hash", Text, nullable=True),  # scrypt$N$r$p$salt$hash
    Column("openid", String, nullable=True),  # unique per app (custom sign-in: a WeChat openid …)
    Column("unionid", String, nullable=True),
    Column("claims", Text, nullable=False),  # JSON object
    Column("created_at", Float, nullable=False),
    Column("last_sign_in_at", Float, nullable=True),
    Column("disabled", Boolean, nullable=False),
    Index("ix_app_users_email", "app", "email", unique=True),
    Index("ix_app_users_openid", "app", "openid", unique=True),
)

app_sessions = Table(
    "app_sessions",
    metadata,
    Column("id", String, primary_key=True),
    Column("app", String, nullable=False),
    Column("uid", String, nullable=False),
    Column("refresh_sha256", String, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("ix_app_sessions_user", "app", "uid"),
    Index("ix_app_sessions_revoked_at", "revoked_at"),
)

# 0010: static sites (`polyfn sites deploy`): the current files of each site as one deterministic zip, so any
# node of a cluster can serve them (each unpacks a digest once into its data dir). `sites.py` reads them.
sites = Table(
    "sites",
    metadata,
    Column("name", String, primary_key=True),
    Column("digest", String, nullable=False),  # archive.digest of the files
    Column("archive", LargeBinary, nullable=False),
    Column("spa", Boolean, nullable=False),  # unknown paths without an extension answer index.html
    Column("files", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# 0011: the vendor faces' own objects, one JSON document each (`kind`: openwhisk.package | openwhisk.trigger |
# openwhisk.rule | openfaas.image). `store/compat.py` reads and writes them.
compat_entities = Table(
    "compat_entities",
    metadata,
    Column("kind", String, primary_key=True),
    Column("name", String, primary_key=True),
    Column("doc", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# 0014: metered usage (observe/usage.py), summed per namespace, function and hour (epoch seconds of the hour's
# start). `mb_ms`: billed milliseconds × configured MB, an exact integer (GB·s = mb_ms / 1024 / 1000).
usage = Table(
    "usage",
    metadata,
    Column("namespace", String, primary_key=True),
    Column("function", String, primary_key=True),
    Column("hour", Integer, primary_key=True),
    Column("invocations", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("billed_ms", BigInteger, nullable=False),
    Column("mb_ms", BigInteger, nullable=False),
    Column("req_bytes", BigInteger, nullable=False),
    Column("resp_bytes", BigInteger, nullable=False),
    Column("storage_byte_s", BigInteger, nullable=False, server_default="0"),  # 0017: bytes held × seconds
    Column("db_reads", BigInteger, nullable=False, server_default="0"),  # 0017: database items read
    Column("db_writes", BigInteger, nullable=False, server_default="0"),  # 0017: database items written
    Column("transitions", BigInteger, nullable=False, server_default="0"),  # 0017: workflow state transitions
    Index("ix_usage_hour", "hour"),
)

# 0015: one row, the oldest code schema that may run against this database (store/schema.py)
schema_compat = Table(
    "schema_compat",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("floor", String, nullable=False),
)

# 0016: namespaces (tenancy.py), `quotas` a JSON object of `tenancy.Quotas`. `default` is implicit: it exists
# without a row (a row only holds its quotas, once set). `store/namespaces.py` reads and writes them.
namespaces = Table(
    "namespaces",
    metadata,
    Column("name", String, primary_key=True),
    Column("quotas", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

quota_use = Table(  # migration 0018_ns6: each cluster node's live instances per namespace (quota_share.py)
    "quota_use",
    metadata,
    Column("node", String, primary_key=True),
    Column("namespace", String, primary_key=True),
    Column("instances", Integer, nullable=False, server_default="0"),
    Column("memory_mb", Integer, nullable=False, server_default="0"),
    Column("idle", Integer, nullable=False, server_default="0"),
    Column("active", Integer, nullable=False, server_default="0"),  # 1: it served calls of the namespace lately
    Column("wants", Integer, nullable=False, server_default="0"),  # 1: refused a start, asks others to free idle ones
    Column("updated_at", Float, nullable=False),
)
