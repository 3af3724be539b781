"""Store access for the identity core: tables `apps`, `app_users`, `app_sessions` (migration 0010)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from polyfn.apps.model import App, AppConfig, Session, User
from polyfn.store.db import Store
from polyfn.store.tables import app_sessions, app_users, apps


class Conflict(Exception):
    """A row with the same key (app id; a user's email or openid) exists."""


class AppStore:
    def __init__(self, store: Store):
        self.store = store

    # -- apps ------------------------------------------------------------------------------------------

    async def create_app(self, app: App) -> None:
        try:
            async with self.store._writer() as conn:
                await conn.execute(apps.insert().values(id=app.id, config=_json(app.config), created_at=app.created_at,
                                                        updated_at=app.updated_at, namespace=app.namespace))
        except IntegrityError:
            raise Conflict(app.id) from None

    async def list_apps(self) -> list[App]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(apps).order_by(apps.c.id))).mappings().all()
        return [_app(r) for r in rows]

    async def get_app(self, app_id: str) -> App | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(apps).where(apps.c.id == app_id))).mappings().first()
        return _app(row) if row is not None else None

    async def update_app(self, app_id: str, config: AppConfig, now: float) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(update(apps).where(apps.c.id == app_id)
                                     .values(config=_json(config), updated_at=now))
        return bool(res.rowcount)

    async def delete_app(self, app_id: str) -> bool:
        """The app goes with its users and sessions."""
        async with self.store._writer() as conn:
            await conn.execute(delete(app_sessions).where(app_sessions.c.app == app_id))
            await conn.execute(delete(app_users).where(app_users.c.app == app_id))
            res = await conn.execute(delete(apps).where(apps.c.id == app_id))
        return bool(res.rowcount)

    # -- users -----------------------------------------------------------------------------------------

    async def add_user(self, user: User) -> None:
        values = msgspec.to_builtins(user)
        values["claims"] = json.dumps(user.claims)
        try:
            async with self.store._writer() as conn:
                await conn.execute(app_users.insert().values(**values))
        except IntegrityError:
            raise Conflict(user.email or user.openid or user.uid) from None

    async def get_user(self, app: str, uid: str) -> User | None:
        return await self._one(app_users.c.uid == uid, app)

    async def user_by_email(self, app: str, email: str) -> User | None:
        return await self._one(app_users.c.email == email, app)

    async def user_by_openid(self, app: str, openid: str) -> User | None:
        return await self._one(app_users.c.openid == openid, app)

    async def _one(self, where: Any, app: str) -> User | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(app_users).where(app_users.c.app == app, where))).mappings().first()
        return _user(row) if row is not None else None

    async def list_users(self, app: str, limit: int = 100, after: str = "") -> list[User]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(app_users).where(app_users.c.app == app, app_users.c.uid > after)
                                       .order_by(app_users.c.uid).limit(limit))).mappings().all()
        return [_user(r) for r in rows]

    async def update_user(self, app: str, uid: str, **values: Any) -> bool:
        if "claims" in values:
            values["claims"] = json.dumps(values["claims"])
        async with self.store._writer() as conn:
            res = await conn.execute(update(app_users).where(app_users.c.app == app, app_users.c.uid == uid)
                                     .values(**values))
        return bool(res.rowcount)

    async def delete_user(self, app: str, uid: str) -> bool:
        async with self.store._writer() as conn:
            await conn.execute(delete(app_sessions).where(app_sessions.c.app == app, app_sessions.c.uid == uid))
            res = await conn.execute(delete(app_users).where(app_users.c.app == app, app_users.c.uid == uid))
        return bool(res.rowcount)

    # -- sessions --------------------------------------------------------------------------------------

    async def add_session(self, s: Session) -> None:
        async with self.store._writer() as conn:
            await conn.execute(app_sessions.insert().values(**msgspec.to_builtins(s)))

    async def get_session(self, session_id: str) -> Session | None:
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(app_sessions).where(app_sessions.c.id == session_id))).mappings().first()
        return Session(**dict(row)) if row is not None else None

    async def rotate_session(self, session_id: str, old_sha256: str, new_sha256: str, expires_at: float) -> bool:
        """Swap the refresh secret if it is still `old_sha256` and the session is live (compare-and-set: of two
        refreshes racing with the same token, one wins)."""
        async with self.store._writer() as conn:
            res = await conn.execute(update(app_sessions).where(
                app_sessions.c.id == session_id, app_sessions.c.refresh_sha256 == old_sha256,
                app_sessions.c.revoked_at.is_(None)).values(refresh_sha256=new_sha256, expires_at=expires_at))
        return bool(res.rowcount)

    async def revoke_session(self, session_id: str, now: float) -> bool:
        async with self.store._writer() as conn:
            res = await conn.execute(update(app_sessions).where(app_sessions.c.id == session_id,
                                                                app_sessions.c.revoked_at.is_(None))
                                     .values(revoked_at=now))
        return bool(res.rowcount)

    async def revoke_user_sessions(self, app: str, uid: str, now: float) -> list[str]:
        async with self.store._writer() as conn:
            ids = (await conn.execute(select(app_sessions.c.id).where(
                app_sessions.c.app == app, app_sessions.c.uid == uid, app_sessions.c.revoked_at.is_(None)))).scalars().all()
            if ids:
                await conn.execute(update(app_sessions).where(app_sessions.c.id.in_(ids)).values(revoked_at=now))
        return list(ids)

    async def revoked_since(self, since: float) -> list[str]:
        """Ids of sessions revoked at or after `since` (their access tokens may still be alive)."""
        async with self.store.engine.connect() as conn:
            return list((await conn.execute(select(app_sessions.c.id).where(app_sessions.c.revoked_at >= since)))
                        .scalars().all())

    async def prune_sessions(self, now: float, keep_revoked: float) -> int:
        """Drop sessions that expired, and revoked ones whose access tokens are all dead."""
        async with self.store._writer() as conn:
            res = await conn.execute(delete(app_sessions).where(
                (app_sessions.c.expires_at < now) | (app_sessions.c.revoked_at < now - keep_revoked)))
        return int(res.rowcount or 0)


def _json(config: AppConfig) -> str:
    return msgspec.json.encode(config).decode()


def _app(row: Any) -> App:
    return App(id=row["id"], config=msgspec.json.decode(row["config"], type=AppConfig),
               created_at=row["created_at"], updated_at=row["updated_at"], namespace=row["namespace"])


def _user(row: Any) -> User:
    values = dict(row)
    values["claims"] = json.loads(values["claims"] or "{}")
    values["disabled"] = bool(values["disabled"])
    return User(**values)
