"""Postgres access: connections, the asyncpg pool, LISTEN, and user-scoped (RLS) transactions."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pgvector.asyncpg import register_vector

from accessa.config import Settings

SCHEMA = "upload_pipeline"
log = logging.getLogger("accessa.db")


# --- connections: TLS (sslmode, sslrootcert, sslcert, sslkey) travels in the DSN


def with_database(dsn: str, database: str) -> str:
    """`dsn` naming another database of the same server; its query (TLS options) is kept."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


async def connect(dsn: str, *, database: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    """One connection outside the pool (migrations, LISTEN, probes)."""
    return await asyncpg.connect(with_database(dsn, database) if database else dsn, **kwargs)


def describe_error(exc: BaseException) -> str:
    """One readable line for why Postgres could not be reached or used."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed ({(exc.verify_message or str(exc)).rstrip('.')})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, FileNotFoundError):
        return f"file not found ({exc.filename or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect ({exc.strerror})"
    return str(exc) or type(exc).__name__


async def problem(dsn: str, timeout_s: float = 5.0) -> str | None:
    """None when a fresh connection runs a query on the server's `postgres` db, else why not."""
    try:
        conn = await connect(dsn, database="postgres", timeout=timeout_s)
    except Exception as exc:
        return describe_error(exc)
    try:
        return None if await conn.fetchval("SELECT 1") == 1 else "SELECT 1 failed"
    except Exception as exc:
        return describe_error(exc)
    finally:
        await conn.close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await register_vector(conn)
    for typ in ("jsonb", "json"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (`RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()`), one round trip per checkout: no pooled connection is given
    session state (every SET is LOCAL, LISTEN and the migration lock use their own
    connections; tests/unit/test_session_state.py holds us to it). asyncpg still rolls back
    an open transaction before this runs."""


async def create_pool(settings: Settings, process: str = "ops", **overrides: Any) -> asyncpg.Pool:
    """A pool, logged in as `process` (Settings.dsn_for), whose connections know the schema,
    pgvector and JSON codecs."""
    kwargs: dict[str, Any] = {
        "min_size": settings.db_pool_min,
        "max_size": settings.db_pool_max,
        "init": _init_connection,
        "reset": _keep_session,
        "command_timeout": 60,
        # A startup parameter, not a SET: it holds for the connection's life.
        "server_settings": {"search_path": f"{SCHEMA}, public"},
    }
    kwargs.update(overrides)
    return await asyncpg.create_pool(settings.dsn_for(process), **kwargs)


class Listener:
    """One LISTEN connection outside the pool: `on_notify(payload)` for each notification on
    `channel`; `on_gap()` whenever some may have been missed (on connecting, and on losing it).

    `lost` is set when the connection drops; `ensure()` opens it again. The notifying side is a
    trigger (migrations 0011, 0016), so every writer of the table wakes the listeners.
    """

    def __init__(
        self, dsn: str, channel: str, on_notify: Callable[[str], None], on_gap: Callable[[], None]
    ) -> None:
        self._dsn, self.channel = dsn, channel
        self._on_notify, self._on_gap = on_notify, on_gap
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self.lost = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> None:
        """Open the connection and LISTEN, unless that is done already."""
        if self.listening:
            return
        async with self._lock:
            if self.listening:
                return
            # Named, so an operator (or a test) can tell it in pg_stat_activity.
            name = {"application_name": f"accessa listen {self.channel}"}
            conn = await connect(self._dsn, timeout=10, server_settings=name)
            try:
                await conn.add_listener(self.channel, self._notified)
            except BaseException:
                await conn.close(timeout=5)
                raise
            conn.add_termination_listener(self._terminated)
            self._conn = conn
            self.lost.clear()
            self._on_gap()  # what was notified while nobody listened is in the table

    async def check(self, timeout_s: float = 10.0) -> None:
        """Raise unless the connection answers (a half-open TCP connection never says it is
        gone); a connection that does not answer is dropped and counts as lost."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise ConnectionError(f"not listening on {self.channel}")
        try:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
        except BaseException:
            self._drop(conn)
            conn.terminate()
            raise

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)

    def _terminated(self, conn: object) -> None:
        if conn is self._conn:  # not one we closed ourselves
            log.warning("postgres: the LISTEN connection on %s was lost", self.channel)
            self._drop(conn)

    def _drop(self, conn: object) -> None:
        if conn is self._conn:
            self._conn = None
            self.lost.set()
            self._on_gap()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                await conn.close(timeout=5)


class NotReady(Exception):
    """A readiness check failed; the message is the reason."""


class PoolOpener:
    """The process's pool, opened without crashing the process: tries until Postgres accepts
    it, so that a process Postgres refuses (a wrong CA, a bad password) stays up and reports
    not ready with the reason instead of crash-looping."""

    def __init__(
        self,
        settings: Settings,
        process: str = "ops",
        retry_s: float = 1.0,
        max_retry_s: float = 60.0,
        **overrides: Any,
    ) -> None:
        self._settings, self._process, self._overrides = settings, process, overrides
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self.pool: asyncpg.Pool | None = None
        self.error = "not connected yet"
        self.failures = 0

    def _delay(self) -> float:
        """Wait before the next try: `retry_s`, doubling per failure, at most `max_retry_s`."""
        return min(self._retry_s * 2 ** min(max(self.failures - 1, 0), 16), self._max_retry_s)

    async def try_open(self) -> asyncpg.Pool | None:
        """One try (none once the pool exists); a failure is logged once and kept as reason."""
        if self.pool is None:
            try:
                self.pool = await create_pool(
                    self._settings, process=self._process, **self._overrides
                )
            except Exception as exc:
                self.error = describe_error(exc)
                self.failures += 1
                log.warning("postgres: %s (next try in %.0f s)", self.error, self._delay())
        return self.pool

    async def open(self) -> asyncpg.Pool:
        """The pool, trying until Postgres accepts the process (backoff after each failure)."""
        while (pool := self.pool) is None:
            if self.failures:
                await asyncio.sleep(self._delay())  # the retry period
            await self.try_open()
        return pool

    async def problem(self) -> str | None:
        """Readiness: None when the pool answers a query, else why not."""
        if self.pool is None:
            return self.error
        try:
            return None if await self.pool.fetchval("SELECT 1") == 1 else "SELECT 1 failed"
        except Exception as exc:
            return describe_error(exc)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


@asynccontextmanager
async def user_transaction(
    pool: asyncpg.Pool, user_id: uuid.UUID | str
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction running as `accessa_app` with `app.user_id` set: RLS applies to it."""
    async with pool.acquire() as conn, conn.transaction():
        # One round trip: set_config('role', ..., true) is SET LOCAL ROLE (as PostgREST does).
        await conn.execute(
            "SELECT set_config('role', 'accessa_app', true), set_config('app.user_id', $1, true)",
            str(user_id),
        )
        yield conn
