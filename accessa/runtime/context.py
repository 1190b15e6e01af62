"""What a stage handler gets: resources, its job, and the one way to commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from accessa.config import Settings
from accessa.errors import PermanentError
from accessa.runtime.faults import FaultInjector
from accessa.storage import Storage
from schemas.events import Event

T = TypeVar("T")
log = logging.getLogger("accessa.runtime")


# The database or broker is down or restarting: retried in place, no attempt spent. A server
# shutdown (57P0x) and asyncpg's protocol-state errors on a dropped connection count too.
INFRA_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
)


async def retry_infra(op: Callable[[], Awaitable[T]], what: str) -> T:
    """`op()`, retried in place while the database or broker is unreachable."""
    delay = 0.5
    while True:
        try:
            return await op()
        except INFRA_ERRORS as exc:
            log.warning("%s: infrastructure unavailable, retrying in place: %r", what, exc)
            await asyncio.sleep(delay)  # backoff: the database or broker is restarting
            delay = min(delay * 2, 10)


class AlreadyCommitted(Exception):
    """Another delivery of this event committed first; the runtime re-emits its output."""


@dataclass
class StageResources:
    """Per-process resources shared by every record (created once at start-up)."""

    settings: Settings
    pool: asyncpg.Pool
    storage: Storage
    faults: FaultInjector
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """Per-record view handed to the handler."""

    stage: str
    consumer: str
    event: Event
    attempt: int
    res: StageResources
    output_topic: str
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
            """SELECT j.*, d.raw_path, d.sha256 AS document_sha256, d.filename
               FROM upload_jobs j JOIN documents d USING (document_id)
               WHERE j.job_id = $1""",
            self.event.job_id,
        )
        if row is None:
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
        """
        async with self.pool.acquire() as conn, conn.transaction():
            first = await conn.fetchval(
                """INSERT INTO processed_events
                     (consumer, event_id, output_topic, output_key, output_value)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT DO NOTHING RETURNING true""",
                self.consumer,
                self.event.event_id,
                self.output_topic if output else None,
                output.key() if output else None,
                output.to_bytes() if output else None,
            )
            if not first:
                raise AlreadyCommitted
            yield conn
            self.fault("before_db_commit")
        self.committed = True
