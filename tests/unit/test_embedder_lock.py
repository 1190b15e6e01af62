"""The embedder's document lock is a session advisory lock on a pooled connection, and pooled
connections are not reset on release: a connection whose unlock did not run must never go
back to the pool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from consumers.embedder.vectors import document_lock


class _Conn:
    def __init__(self, unlock_error: BaseException | None) -> None:
        self.unlock_error = unlock_error
        self.statements: list[str] = []
        self.terminated = False

    async def fetchval(self, sql: str, *args: Any) -> bool:
        self.statements.append(sql)
        return True

    async def execute(self, sql: str, *args: Any) -> None:
        self.statements.append(sql)
        if self.unlock_error is not None:
            raise self.unlock_error

    def terminate(self) -> None:
        self.terminated = True


class _Pool:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Conn]:
        yield self.conn


async def test_the_lock_is_released_and_the_connection_kept() -> None:
    conn = _Conn(None)
    async with document_lock(_Pool(conn), uuid.uuid4()):
        pass
    assert "pg_advisory_unlock" in conn.statements[-1] and not conn.terminated


@pytest.mark.parametrize("error", [asyncio.CancelledError(), ConnectionResetError()])
async def test_a_connection_whose_unlock_failed_is_closed_not_pooled(error: BaseException) -> None:
    conn = _Conn(error)
    with pytest.raises(type(error)):
        async with document_lock(_Pool(conn), uuid.uuid4()):
            pass
    assert conn.terminated
