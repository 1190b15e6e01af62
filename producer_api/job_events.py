"""Live job progress: one LISTEN connection per API process, fanned out to SSE streams.

Every `events` row NOTIFYs `job_events` with '<job_id>:<id>' (migration 0011). A notification
only wakes the streams of that job; each stream then reads its rows (id > the last it sent)
through the pool under the caller's RLS, so the payload is never trusted and a stream holds no
connection while it waits. A reconnect with `Last-Event-ID` resumes the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from accessa import jobs
from accessa.db import Listener
from producer_api.core.config import Db
from producer_api.core.errors import ApiError
from producer_api.models import job_public

CHANNEL = "job_events"
HEARTBEAT_S = 15.0  # the default of ACCESSA_SSE_HEARTBEAT_S, which the route passes
TERMINAL_STATES = ("done", "deadletter")


class JobEventHub:
    """Wakes the subscribers of a job when one of its events commits."""

    def __init__(self, dsn: str) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self._streams: Counter[str] = Counter()  # open streams by caller
        self._listener = Listener(dsn, CHANNEL, self._on_notify, self._wake_all)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[asyncio.Queue[int]]:
        """A queue of this job's new event ids (0: re-read, something may have been missed)."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        key = str(job_id)
        self._subscribers[key].add(queue)
        try:
            await self.ensure_listening()
            yield queue
        finally:
            self._subscribers[key].discard(queue)
            if not self._subscribers[key]:
                del self._subscribers[key]

    def claim_stream(self, caller: str, limit: int) -> Callable[[], None]:
        """A stream slot for `caller` (release it once), or ApiError 429 past `limit` open."""
        if self._streams[caller] >= limit:
            raise ApiError(
                429,
                "too_many_streams",
                f"at most {limit} event streams may be open at once; close one first",
            )
        self._streams[caller] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._streams[caller] -= 1
                if self._streams[caller] <= 0:
                    del self._streams[caller]

        return release

    @property
    def listening(self) -> bool:
        return self._listener.listening

    async def ensure_listening(self) -> None:
        """(Re)open the LISTEN connection; after a gap every subscriber re-reads."""
        await self._listener.ensure()

    def _on_notify(self, payload: str) -> None:
        job_id, _, event_id = payload.partition(":")
        for queue in self._subscribers.get(job_id, ()):
            queue.put_nowait(int(event_id or 0))

    def _wake_all(self) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(0)

    async def close(self) -> None:
        await self._listener.close()


class SlotStreamingResponse(StreamingResponse):
    """A stream that gives its slot back when it ends, however it ends (also when the
    client went away before the first byte, where the generator never starts)."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def _sse(data: dict[str, Any], *, event: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def event_public(row: asyncpg.Record) -> dict[str, Any]:
    """An `events` row as a stream shows it: the user-facing stage label and percent."""
    detail = row["detail"] or {}
    label, percent = jobs.PROGRESS.get(row["status"], (row["status"], None))
    if row["kind"] in ("created", "advanced") and "stage" in detail:
        label = detail["stage"]
        percent = int(detail.get("percent", 10 if label == "validated" else 0))
    return {
        "id": row["id"],
        "job_id": str(row["job_id"]),
        "kind": row["kind"],
        "status": row["status"],
        "stage": label,
        "progress": percent,
        "actor": row["stage"],
        "detail": detail,
        "at": row["created_at"].isoformat(),
    }


async def stream(
    hub: JobEventHub, db: Db, job_id: uuid.UUID, last_id: int, heartbeat_s: float = HEARTBEAT_S
) -> AsyncIterator[bytes]:
    """The job's events after `last_id`, then live ones, until the job reaches a terminal
    state (then an `end` event carrying the job). A comment every `heartbeat_s` keeps proxies
    from closing an idle stream."""
    async with hub.subscribe(job_id) as queue:
        while True:
            async with db.tx() as conn:
                # The job first: once it is terminal, every event up to that is committed.
                job = await conn.fetchrow(
                    """SELECT j.*, d.filename FROM upload_jobs j JOIN documents d
                       USING (document_id) WHERE j.job_id = $1""",
                    job_id,
                )
                rows = await conn.fetch(
                    "SELECT * FROM events WHERE job_id = $1 AND id > $2 ORDER BY id",
                    job_id,
                    last_id,
                )
            for row in rows:
                last_id = row["id"]
                yield _sse(event_public(row), event=row["kind"], event_id=last_id)
            if job is None or job["state"] in TERMINAL_STATES:
                end = job_public(job).model_dump(mode="json") if job else {"deleted": True}
                yield _sse(end, event="end")
                return
            try:
                await asyncio.wait_for(queue.get(), heartbeat_s)
            except TimeoutError:
                yield b": heartbeat\n\n"
                with contextlib.suppress(Exception):  # until it is back, heartbeats re-read
                    await hub.ensure_listening()
            while not queue.empty():  # one read covers every event already notified
                queue.get_nowait()
