"""Dependencies every route uses: settings, storage, and the caller's database scope.

`DbDep.tx()` is the one way routes reach Postgres for a caller: a user's requests run inside
`accessa.db.user_transaction`, so the RLS policies back up every ownership check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from accessa.config import Settings
from accessa.db import user_transaction
from accessa.storage import Storage
from producer_api.core.errors import ApiError
from producer_api.core.security import CurrentPrincipal, Principal


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pool(request: Request) -> asyncpg.Pool:
    pool, opener = request.app.state.pool, getattr(request.app.state, "db", None)
    if pool is None and opener is not None:  # Postgres refuses us; the lifespan keeps trying
        reason = await opener.problem()
        raise ApiError(503, "unavailable", f"the database is unavailable: {reason}")
    return pool


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
StorageDep = Annotated[Storage, Depends(get_storage)]


class Db:
    """The pool seen through one caller."""

    def __init__(self, pool: asyncpg.Pool, principal: Principal) -> None:
        self.pool = pool
        self.principal = principal

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction scoped by RLS to the caller's user (unscoped for a bare service token)."""
        if self.principal.user_id is not None:
            async with user_transaction(self.pool, self.principal.user_id) as conn:
                yield conn
        else:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn


async def get_db(pool: PoolDep, principal: CurrentPrincipal) -> Db:
    return Db(pool, principal)


DbDep = Annotated[Db, Depends(get_db)]
