"""Embedding spend: per user (with today's use of the daily budgets) and per day.

`accessa cost` prints these; the console's Cost page renders them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from accessa.config import Settings

GLOBAL = uuid.UUID(int=0)  # embedding_spend's all-users row


async def cost_report(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    user: uuid.UUID | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """Tokens and USD per user (jobs created from `since`), today's spend, the budgets."""
    rows = await pool.fetch(
        """SELECT user_id, count(*) AS jobs, sum(embed_tokens) AS tokens,
                  sum(cost_usd) AS usd
           FROM upload_jobs
           WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::timestamptz IS NULL
                 OR created_at >= $2)
           GROUP BY user_id ORDER BY usd DESC""",
        user,
        since,
    )
    today = await pool.fetch("SELECT user_id, usd FROM embedding_spend WHERE day = current_date")
    spent_today = {r["user_id"]: float(r["usd"]) for r in today}
    return {
        "users": [
            {
                "user_id": str(r["user_id"]),
                "jobs": r["jobs"],
                "tokens": int(r["tokens"] or 0),
                "usd": float(r["usd"] or 0),
                "usd_today": spent_today.get(r["user_id"], 0.0),
            }
            for r in rows
        ],
        "total_usd": sum(float(r["usd"] or 0) for r in rows),
        "today_global_usd": spent_today.get(GLOBAL, 0.0),
        "budgets": {
            "user_daily_usd": settings.budget_user_daily_usd,
            "global_daily_usd": settings.budget_global_daily_usd,
        },
    }


async def cost_by_day(pool: asyncpg.Pool, *, days: int = 30) -> list[dict[str, Any]]:
    """USD spent per day (all users), newest first, from the budget ledger."""
    rows = await pool.fetch(
        """SELECT day, usd FROM embedding_spend
           WHERE user_id = $1 AND day > current_date - $2::int ORDER BY day DESC""",
        GLOBAL,
        days,
    )
    return [{"day": r["day"].isoformat(), "usd": float(r["usd"])} for r in rows]
