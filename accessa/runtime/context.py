"""What a stage handler gets: resources, its job, and the one way to commit."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

from accessa.config import Settings
from accessa.errors import PermanentError
from accessa.runtime import metrics
from accessa.runtime.faults import FaultInjector
from accessa.storage import Storage
from schemas.events import Event

T = TypeVar("T")
# A stage's own per-process resources (the parser's backend, the embedder's providers), as
# its setup makes them; None for a stage without one.
R = TypeVar("R")
log = logging.getLogger("accessa.runtime")


# The database or broker is down, restarting or unreachable: retried in place, no attempt
# spent, no record blamed. A server shutdown (57P0x) and asyncpg's protocol-state errors on a
# dropped connection count too; TLS errors come only from those connections (HTTP clients wrap
# theirs) and say nothing about the record either.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # ETIMEDOUT included
    socket.gaierror,  # name resolution
    ssl.SSLError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
    KafkaTimeoutError,
)
# Connectivity errnos without an exception class of their own.
_UNREACHABLE = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.EHOSTDOWN,
        errno.ENOTCONN,
        errno.EADDRNOTAVAIL,
    }
)


def is_infra(exc: BaseException) -> bool:
    """Whether `exc` says the database or broker is unreachable (retry in place) rather than
    that this record failed. Any other OSError (EACCES, ENOSPC, EROFS, ENOENT from storage, a
    library's "cannot read this file") is not: in-place retries would never end, never
    dead-letter and never alert; it is a TransientError (retry topics, then the DLQ)."""
    if isinstance(exc, INFRA_ERRORS):
        return True
    if isinstance(exc, OSError):
        # asyncio's create_connection when every address of a host failed: no errno.
        multiple = exc.errno is None and str(exc).startswith("Multiple exceptions: ")
        return exc.errno in _UNREACHABLE or multiple
    return False


class _InfraWaits:
    """In-place retries under way per stage: the age of the oldest is the gauge
    `accessa_infra_retry_seconds`, and a warning is logged at most once a minute per stage,
    not once per attempt of every waiting record."""

    WARN_EVERY_S = 60.0

    def __init__(self) -> None:
        self.since: dict[str, dict[object, float]] = {}
        self.warned: dict[str, float] = {}

    def age(self, stage: str) -> float:
        starts = self.since.get(stage)
        return time.monotonic() - min(starts.values()) if starts else 0.0

    def watch(self, stage: str) -> None:
        """Export the gauge for `stage` from now on (0 while nothing waits), so that dashboards
        and alerts find it before the first outage."""
        if stage not in self.since:
            self.since[stage] = {}
            metrics.INFRA_RETRY.labels(stage).set_function(lambda: self.age(stage))

    def failed(self, stage: str, token: object, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.watch(stage)
        self.since[stage].setdefault(token, now)
        if now - self.warned.get(stage, -self.WARN_EVERY_S) >= self.WARN_EVERY_S:
            self.warned[stage] = now
            log.warning(
                "%s: infrastructure unavailable for %.0fs, %d retrying in place: %r",
                what,
                self.age(stage),
                len(self.since[stage]),
                exc,
            )
        else:
            log.debug("%s: infrastructure unavailable, retrying in place: %r", what, exc)

    def done(self, stage: str, token: object) -> None:
        self.since.get(stage, {}).pop(token, None)


INFRA_WAITS = _InfraWaits()


async def retry_infra(op: Callable[[], Awaitable[T]], what: str, *, stage: str = "") -> T:
    """`op()`, retried in place while the database or broker is unreachable (`is_infra`)."""
    delay = 0.5
    token = object()
    try:
        while True:
            try:
                return await op()
            except Exception as exc:
                if not is_infra(exc):
                    raise
                INFRA_WAITS.failed(stage, token, what, exc)
            await asyncio.sleep(delay)  # backoff: the database or broker is restarting
            delay = min(delay * 2, 10)
    finally:
        INFRA_WAITS.done(stage, token)


class AlreadyCommitted(Exception):
    """Another delivery of this event committed first; the runtime re-emits its output."""


class DocumentDeleted(Exception):
    """The event's job went with its deleted document: nothing to do and nothing for an
    operator to act on, so the runtime counts and skips it instead of dead-lettering."""


@dataclass
class StageResources:
    """Per-process resources shared by every record (created once at start-up)."""

    settings: Settings
    pool: asyncpg.Pool
    storage: Storage
    faults: FaultInjector


@dataclass
class StageContext(Generic[R]):
    """Per-record view handed to the handler; `own` is what the stage's setup made."""

    stage: str
    consumer: str
    event: Event
    attempt: int
    res: StageResources
    output_topic: str
    own: R
    committed: bool = False

    @property
    def settings(self) -> Settings:
        return self.res.settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.res.pool

    @property
    def storage(self) -> Storage:
        return self.res.storage

    def fault(self, point: str) -> None:
        self.res.faults.point(point)

    async def job(self) -> asyncpg.Record:
        """The event's job joined with its document, or PermanentError if either is gone."""
        row = await self.pool.fetchrow(
            """SELECT j.*, d.raw_path, d.sha256 AS document_sha256, d.size AS document_size,
                      d.filename
               FROM upload_jobs j JOIN documents d USING (document_id)
               WHERE j.job_id = $1""",
            self.event.job_id,
        )
        if row is None:
            deleted = await self.pool.fetchval(
                "SELECT document_id FROM deleted_jobs WHERE job_id = $1", self.event.job_id
            )
            if deleted is not None and deleted == self.event.document_id:
                raise DocumentDeleted(f"job {self.event.job_id}: document {deleted} was deleted")
            raise PermanentError(
                f"job {self.event.job_id} or its document does not exist", code="unknown_job"
            )
        if row["document_id"] != self.event.document_id:
            raise PermanentError("event document_id does not match its job", code="job_mismatch")
        if row["user_id"] != self.event.user_id:  # never work on someone else's document
            raise PermanentError("event user_id is not the job's owner", code="user_mismatch")
        return row

    @asynccontextmanager
    async def commit(self, output: Event | None) -> AsyncIterator[asyncpg.Connection]:
        """The stage's one transaction: its writes, the dedup row and the output to emit.

        Raises AlreadyCommitted if a concurrent delivery of the same event won the race.
        Handlers must not open `conn.transaction()` inside it (the transaction is begun by
        hand, see `_begin_with_dedup_row`).
        """
        async with self.pool.acquire() as conn:
            status = await conn.execute(self._begin_with_dedup_row(output))
            try:
                if status != "INSERT 0 1":
                    raise AlreadyCommitted
                yield conn
                self.fault("before_db_commit")
                await conn.execute("COMMIT")
            except BaseException:
                with suppress(Exception):  # a lost connection: the pool discards it
                    await conn.execute("ROLLBACK")
                raise
        self.committed = True

    def _begin_with_dedup_row(self, output: Event | None) -> str:
        """`BEGIN` and the dedup row as one simple-protocol query: one round trip where
        asyncpg's `conn.transaction()` and a parameterised INSERT take two (the extended
        protocol cannot carry BEGIN along), on every record of every stage. Every value is a
        literal quoted here: ids and names from our settings and event, bytes as hex."""
        values = ", ".join(
            (
                _text(self.consumer),
                f"'{self.event.event_id}'",  # a uuid.UUID (the model)
                _text(self.output_topic) if output else "NULL",
                _bytea(output.key()) if output else "NULL",
                _bytea(output.to_bytes()) if output else "NULL",
            )
        )
        return (
            "BEGIN; INSERT INTO processed_events"
            " (consumer, event_id, output_topic, output_key, output_value)"
            f" VALUES ({values}) ON CONFLICT DO NOTHING"
        )


def _text(value: str) -> str:
    if "\0" in value:
        raise ValueError("text with a NUL byte")
    # E'' reads backslashes the same whatever the server's standard_conforming_strings.
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _bytea(value: bytes) -> str:
    return f"E'\\\\x{value.hex()}'::bytea"
