"""Job status, the caller's job list, and retrying a failed job."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from accessa.db import describe_error
from producer_api import crud, job_events, job_retry, ratelimit
from producer_api.core.config import DbDep, PoolDep, SettingsDep
from producer_api.core.errors import ApiError, not_found
from producer_api.models import JobList, JobPublic, JobState, JobStatus, job_public
from producer_api.routes.common import AUTHED, QUOTA, errors
from schemas.events import QualityFlag

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=QUOTA)


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned") from exc


@router.get("/{job_id}", response_model=JobPublic, responses={**AUTHED, **errors(404)})
async def read_job(job_id: uuid.UUID, db: DbDep, pool: PoolDep, settings: SettingsDep) -> JobPublic:
    """Status, stage, progress %, per-stage times, counts, last error and cost so far."""
    async with db.tx() as conn:
        row = await crud.get_job(conn=conn, job_id=job_id)
    if row is None:
        raise not_found("job")
    if settings.rate_limits_enabled:
        await ratelimit.hit(
            pool, bucket=f"poll:{job_id}", limit=ratelimit.limits(settings)["polls"]
        )
    return job_public(row)


_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Server-Sent Events: "
        "one per job transition (id = its audit event id), then `end` with the job.",
    }
}


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**_SSE_DOC, **AUTHED, **errors(404, 429)},
)
async def stream_job_events(
    job_id: uuid.UUID,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        int, Header(alias="Last-Event-ID", ge=0, description="Resume after this event id.")
    ] = 0,
) -> StreamingResponse:
    """Follow a job live: each transition as it commits, ending when the job does.

    Not counted against the status-poll limit; resume a dropped stream with `Last-Event-ID`."""
    async with db.tx() as conn:
        if await crud.get_job(conn=conn, job_id=job_id) is None:
            raise not_found("job")
    hub: job_events.JobEventHub = request.app.state.job_events
    caller = str(db.principal.user_id or "service")
    release = hub.claim_stream(caller, settings.api_sse_streams_per_user)  # 429 past the cap
    try:
        await hub.ensure_listening()
    except Exception as exc:
        release()
        raise ApiError(
            503, "unavailable", f"live events unavailable: {describe_error(exc)}"
        ) from exc
    return job_events.SlotStreamingResponse(
        job_events.stream(hub, db, job_id, last_event_id, settings.sse_heartbeat_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        release=release,
    )


@router.get("", response_model=JobList, responses={**AUTHED, **errors(400)})
async def list_jobs(
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="From next_cursor.")] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    since: Annotated[datetime | None, Query(description="Created at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Created before.")] = None,
    quality: Annotated[
        QualityFlag | None, Query(description="Only jobs with this quality flag.")
    ] = None,
) -> JobList:
    """Your jobs, newest first, with cursor pagination."""
    after = decode_cursor(cursor) if cursor else None
    async with db.tx() as conn:
        rows = await crud.list_jobs(
            conn=conn,
            limit=limit + 1,
            after=after,
            status=status,
            state=state,
            since=since,
            until=until,
            quality=quality,
        )
    page = rows[:limit]
    more = len(rows) > limit
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["job_id"]) if more else None
    return JobList(items=[job_public(r) for r in page], next_cursor=next_cursor)


@router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobPublic,
    responses={**AUTHED, **errors(404, 409)},
)
async def retry_job(job_id: uuid.UUID, db: DbDep, settings: SettingsDep) -> JobPublic:
    """Re-run a failed or dead-lettered job from the stage that failed."""
    return job_public(await job_retry.retry(db=db, settings=settings, job_id=job_id))
