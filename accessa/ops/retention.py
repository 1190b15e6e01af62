"""Retention: delete the rows of the tables that otherwise grow for ever (`accessa gc`).

- `processed_events` (stage dedup, with each output's bytes): a record can come back only while
  a topic holds it. A main or retry copy is gone one topic retention after it was written,
  which is before its event was processed; a replay of a record still in the topic makes a
  copy that lives one retention more. So a dedup row kept two topic retentions
  (ACCESSA_TOPIC_RETENTION_HOURS) outlives every copy that could be redelivered, and gc
  refuses a shorter ACCESSA_RETENTION_PROCESSED_EVENTS_DAYS.
- `dlq_redrives` (each DLQ record redriven once): likewise at least the DLQ topics' retention.
- `outbox`: only published rows (a relay never reads them again); unpublished and failed ones
  stay whatever their age.
- `embedding_cache`: a deleted text is embedded (and paid for) again when it comes back.

Deletes go a batch (ACCESSA_RETENTION_BATCH_ROWS) at a time, each its own short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from accessa.config import Settings
from accessa.topics import DLQ_RETENTION_HOURS


class RetentionUnsafe(Exception):
    """A retention setting is shorter than what keeps deduplication correct."""


@dataclass(frozen=True)
class Rule:
    """What one table keeps: rows whose `column` is older than `days` go (`only` must hold)."""

    table: str
    column: str
    setting: str
    only: str = "TRUE"

    def days(self, settings: Settings) -> float:
        return getattr(settings, self.setting)


RULES = (
    Rule("processed_events", "created_at", "retention_processed_events_days"),
    Rule("outbox", "published_at", "retention_outbox_days", only="published_at IS NOT NULL"),
    Rule("embedding_cache", "created_at", "retention_embedding_cache_days"),
    Rule("dlq_redrives", "redriven_at", "retention_dlq_redrives_days"),
)


def check(settings: Settings) -> None:
    """Raise RetentionUnsafe if dedup or redrive rows would go before their records could."""
    topic_h = settings.topic_retention_hours
    if settings.retention_processed_events_days * 24 < 2 * topic_h:
        raise RetentionUnsafe(
            f"ACCESSA_RETENTION_PROCESSED_EVENTS_DAYS={settings.retention_processed_events_days:g}"
            f" is shorter than twice the topics' retention ({2 * topic_h:g} h): a redelivered "
            "or replayed record could be processed twice"
        )
    dlq_h = max(topic_h, DLQ_RETENTION_HOURS)
    if settings.retention_dlq_redrives_days * 24 < dlq_h:
        raise RetentionUnsafe(
            f"ACCESSA_RETENTION_DLQ_REDRIVES_DAYS={settings.retention_dlq_redrives_days:g} is "
            f"shorter than the DLQ topics' retention ({dlq_h:g} h): a dead letter could be "
            "redriven twice"
        )


@dataclass
class Outcome:
    """One table's result: rows past retention (dry run) or deleted."""

    table: str
    days: float
    rows: int


async def collect(
    settings: Settings, pool: asyncpg.Pool, *, dry_run: bool = False
) -> list[Outcome]:
    """Delete (or, with `dry_run`, count) every table's rows past its retention."""
    check(settings)
    outcomes = []
    for rule in RULES:
        days = rule.days(settings)
        where = f"{rule.only} AND {rule.column} < now() - make_interval(secs => $1)"
        seconds = days * 86_400
        if dry_run:
            rows = await pool.fetchval(f"SELECT count(*) FROM {rule.table} WHERE {where}", seconds)
        else:
            rows = await _delete(pool, rule.table, where, seconds, settings.retention_batch_rows)
        outcomes.append(Outcome(rule.table, days, rows))
    return outcomes


async def _delete(pool: asyncpg.Pool, table: str, where: str, seconds: float, batch: int) -> int:
    """Delete in batches until one comes back short. Safe beside the stages: SKIP LOCKED
    leaves a row another transaction holds (it is old, so at worst it waits for the next
    run), and the ctid read under FOR UPDATE cannot move before this statement deletes it."""
    sql = (
        f"WITH doomed AS (SELECT ctid FROM {table} WHERE {where} LIMIT $2 FOR UPDATE SKIP LOCKED)"
        f" DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM doomed)"
    )
    total = 0
    while True:
        status = await pool.execute(sql, seconds, batch)
        deleted = int(status.rsplit(" ", 1)[1])
        total += deleted
        if deleted < batch:
            return total
