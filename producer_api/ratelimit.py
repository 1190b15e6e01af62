"""Rate limits as fixed-window counters in Postgres, so every API replica shares them.

Why Postgres: the `limits` library has no Postgres storage and no Redis runs here, and the
database is already shared by every replica. One atomic upsert per hit decides it
(`ON CONFLICT ... DO UPDATE ... WHERE hits < limit`: a refused hit does not count).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from accessa.config import Settings
from producer_api.core.config import PoolDep, SettingsDep
from producer_api.core.errors import ApiError
from producer_api.core.security import CurrentPrincipal
from producer_api.metrics import route_template

_HIT = """
WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / $3) * $3) AS start)
INSERT INTO rate_limit_counters AS c (bucket, window_start, hits, expires_at)
SELECT $1, w.start, 1, w.start + make_interval(secs => $3) FROM w WHERE $2 > 0
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = c.hits + 1 WHERE c.hits < $2
RETURNING hits"""
_RETRY_AFTER = "SELECT ceil($1 - mod(extract(epoch FROM now())::numeric, $1))::int"


@dataclass(frozen=True)
class Limit:
    code: str
    what: str
    limit: int
    window_s: int


def limits(settings: Settings) -> dict[str, Limit]:
    return {
        "uploads": Limit(
            "upload_quota_exceeded", "uploads per day", settings.rate_uploads_per_day, 86400
        ),
        "polls": Limit(
            "poll_rate_exceeded",
            "status polls per minute for this job",
            settings.rate_polls_per_minute,
            60,
        ),
        "requests": Limit(
            "request_rate_exceeded",
            "requests per hour to this endpoint",
            settings.rate_requests_per_hour,
            3600,
        ),
    }


async def hit(conn: asyncpg.Connection | asyncpg.Pool, *, bucket: str, limit: Limit) -> None:
    """Count one hit in `bucket`; ApiError 429 with Retry-After when the window is full."""
    if await conn.fetchval(_HIT, bucket, limit.limit, float(limit.window_s)) is not None:
        return
    retry_after = await conn.fetchval(_RETRY_AFTER, limit.window_s)
    raise too_many(limit.code, f"limit of {limit.limit} {limit.what} reached", max(retry_after, 1))


def too_many(code: str, message: str, retry_after: int) -> ApiError:
    return ApiError(429, code, message, headers={"Retry-After": str(retry_after)})


async def check_active_jobs(
    conn: asyncpg.Connection, *, settings: Settings, user_id: uuid.UUID
) -> None:
    """At most `rate_active_jobs` unfinished jobs per user. Abandoned two-step uploads stop
    counting once their signed URL has expired; an operator's reprocess jobs never count."""
    if not settings.rate_limits_enabled:
        return
    active = await conn.fetchval(
        """SELECT count(*) FROM upload_jobs
           WHERE user_id = $1 AND state NOT IN ('done', 'deadletter') AND kind = 'upload'
             AND NOT (stage = 'queued' AND created_at < now() - make_interval(secs => $2))""",
        user_id,
        float(settings.signed_url_ttl_s),
    )
    if active >= settings.rate_active_jobs:
        raise too_many(
            "too_many_active_jobs",
            f"{active} jobs are still running (limit {settings.rate_active_jobs})",
            30,
        )


async def cleanup(pool: asyncpg.Pool) -> int:
    """Drop expired windows; returns how many."""
    status = await pool.execute("DELETE FROM rate_limit_counters WHERE expires_at < now()")
    return int(status.split()[-1])


async def limit_requests(
    request: Request, settings: SettingsDep, pool: PoolDep, principal: CurrentPrincipal
) -> None:
    """Router dependency: `rate_requests_per_hour` per caller per endpoint."""
    if not settings.rate_limits_enabled:
        return
    endpoint = f"{request.method} {route_template(request.scope)}"
    caller = principal.user_id or "service"
    await hit(pool, bucket=f"req:{endpoint}:{caller}", limit=limits(settings)["requests"])


RequestQuota = Annotated[None, Depends(limit_requests)]
