"""What a stage handler gets: its resources, its job, and the unit of work it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from accessa.config import Settings
from accessa.errors import PermanentError
from accessa.runtime.faults import FaultInjector
from accessa.runtime.work import Work
from accessa.storage import Storage
from schemas.events import Event

# A stage's own per-process resources (the parser's backend, the embedder's providers), as
# its setup makes them; None for a stage without one.
R = TypeVar("R")


# A job with its document: `ctx.job()`, and the runtime's read of a wave's jobs (`JOBS`).
_JOB_COLUMNS = """SELECT j.*, d.raw_path, d.sha256 AS document_sha256, d.size AS document_size,
       d.filename
FROM upload_jobs j JOIN documents d USING (document_id)"""
JOB = f"{_JOB_COLUMNS} WHERE j.job_id = $1"
JOBS = f"{_JOB_COLUMNS} WHERE j.job_id = ANY($1::uuid[])"


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
    read_job: asyncpg.Record | None = None  # the job as the runtime read it with the wave

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
        row = self.read_job
        if row is None:  # not read with the wave (or not there: then say why)
            row = await self.pool.fetchrow(JOB, self.event.job_id)
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

    def work(self, output: Event | None) -> Work:
        """The record's unit of work: return it with the writes added; the runtime commits it
        with the poll's other records, the dedup row included, and then emits `output`."""
        ev = self.event
        return Work(output, job=(ev.job_id, ev.document_id, ev.user_id), actor=self.stage)
