"""Pipeline status in one call: Kafka (groups, lag, DLQ depth) + Postgres (jobs, audit)."""

from __future__ import annotations

from typing import Any

import asyncpg

from accessa import kafka_clients
from accessa.config import Settings
from accessa.topic_scan import group_members, partitions
from accessa.topics import topics_for
from schemas.topics import STAGES

# Which stage holds an unfinished job, by the job's status.
HELD_BY = {
    "uploaded": "parser",
    "parse_queued": "parser",
    "parsed": "chunker",
    "parse_validated": "chunker",
    "chunking": "chunker",
    "chunks_stored": "embedder",
    "embedding_queued": "embedder",
    "embedding_in_progress": "embedder",
    "embeddings_stored": "finalizer",
}


async def kafka_status(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per stage: live members of its group, lag per partition and total, DLQ depth."""
    names = topics_for(settings)
    admin = kafka_clients.admin(settings)
    consumer = kafka_clients.consumer(settings)
    await admin.start()
    await consumer.start()
    try:
        out: dict[str, dict[str, Any]] = {}
        for stage in STAGES.values():
            group = f"{settings.topic_prefix}{settings.group_prefix}{stage.name}"
            state, members = await group_members(admin, group)
            committed = await admin.list_consumer_group_offsets(group)
            parts = await partitions(settings, names.name(stage.input))
            ends = await consumer.end_offsets(parts) if parts else {}
            starts = await consumer.beginning_offsets(parts) if parts else {}
            lag = {
                tp.partition: ends[tp] - (committed[tp].offset if tp in committed else starts[tp])
                for tp in parts
            }
            dlq_parts = await partitions(settings, names.dlq(stage.input))
            dlq_end = await consumer.end_offsets(dlq_parts) if dlq_parts else {}
            dlq_start = await consumer.beginning_offsets(dlq_parts) if dlq_parts else {}
            out[stage.name] = {
                "group": group,
                "topic": names.name(stage.input),
                "replicas": len(members),
                "state": state,
                "lag": sum(lag.values()),
                "lag_by_partition": lag,
                "dlq_depth": sum(dlq_end[tp] - dlq_start[tp] for tp in dlq_parts),
            }
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def database_status(pool: asyncpg.Pool) -> dict[str, Any]:
    """Jobs by state/status, per-stage throughput and errors (last minute / hour), the oldest
    unfinished job."""
    by_status = await pool.fetch(
        "SELECT status, state, count(*) AS n FROM upload_jobs GROUP BY status, state ORDER BY 1"
    )
    activity = await pool.fetch(
        """SELECT stage,
                  -- documents, not transitions: the parser advances a job three times
                  count(DISTINCT document_id) FILTER (WHERE kind = 'advanced'
                                   AND created_at > now() - interval '1 minute')
                    AS documents_last_minute,
                  count(*) FILTER (WHERE kind IN ('failed', 'retrying')) AS errors_last_hour,
                  count(*) FILTER (WHERE kind = 'retrying') AS retries_last_hour
           FROM events WHERE created_at > now() - interval '1 hour' GROUP BY stage"""
    )
    holding = await pool.fetch(
        """SELECT status, count(*) AS n FROM upload_jobs
           WHERE state NOT IN ('done', 'deadletter') GROUP BY status"""
    )
    oldest = await pool.fetchrow(
        """SELECT job_id, document_id, status, state, stage, progress, created_at,
                  extract(epoch FROM now() - created_at) AS age_s, last_error
           FROM upload_jobs WHERE state NOT IN ('done', 'deadletter')
           ORDER BY created_at LIMIT 1"""
    )
    outbox_failed = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL AND published_at IS NULL"
    )
    in_flight = dict.fromkeys(STAGES, 0)
    for row in holding:
        if row["status"] in HELD_BY:
            in_flight[HELD_BY[row["status"]]] += row["n"]
    return {
        "in_flight": in_flight,
        "jobs": [dict(r) for r in by_status],
        "activity": {r["stage"]: dict(r) for r in activity},
        "oldest_unfinished": dict(oldest) if oldest else None,
        "outbox_failed": outbox_failed,
    }


async def pipeline_status(settings: Settings, pool: asyncpg.Pool) -> dict[str, Any]:
    kafka = await kafka_status(settings)
    db = await database_status(pool)
    for name, stage in kafka.items():
        act = db["activity"].get(name, {})
        stage["documents_last_minute"] = act.get("documents_last_minute", 0)
        stage["errors_last_hour"] = act.get("errors_last_hour", 0)
        stage["retries_last_hour"] = act.get("retries_last_hour", 0)
        stage["in_flight"] = db["in_flight"][name]
    return {
        "stages": kafka,
        "jobs": db["jobs"],
        "oldest_unfinished": db["oldest_unfinished"],
        "outbox_failed": db["outbox_failed"],
    }
