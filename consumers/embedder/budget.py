"""Daily embedding budgets: record spend, refuse to start work that would exceed a budget."""

from __future__ import annotations

import uuid

import asyncpg

from accessa.config import Settings
from accessa.errors import RecoverableError

EVERYONE = uuid.UUID(int=0)  # the global total's row in embedding_spend


async def record_spend(
    conn: asyncpg.Connection, user_id: uuid.UUID, usd: float, tokens: int
) -> None:
    await conn.executemany(
        """INSERT INTO embedding_spend (day, user_id, usd, tokens)
           VALUES (current_date, $1, $2, $3)
           ON CONFLICT (day, user_id) DO UPDATE
           SET usd = embedding_spend.usd + EXCLUDED.usd,
               tokens = embedding_spend.tokens + EXCLUDED.tokens""",
        [(user_id, usd, tokens), (EVERYONE, usd, tokens)],
    )


async def check_budget(
    pool: asyncpg.Pool, settings: Settings, user_id: uuid.UUID, estimated_tokens: int
) -> None:
    """RecoverableError(`budget_exceeded`) if this work would take today's spend over a budget:
    the document waits (retry topic, no attempt spent) and resumes when the budget allows."""
    limits = {user_id: settings.budget_user_daily_usd, EVERYONE: settings.budget_global_daily_usd}
    if all(v is None for v in limits.values()) or estimated_tokens == 0:
        return
    estimate = estimated_tokens * settings.embed_price_per_mtok / 1_000_000
    spent = dict(
        await pool.fetch(
            "SELECT user_id, usd FROM embedding_spend WHERE day = current_date "
            "AND user_id = ANY($1::uuid[])",
            list(limits),
        )
    )
    for who, limit in limits.items():
        if limit is not None and float(spent.get(who, 0)) + estimate > limit:
            scope = "global" if who == EVERYONE else "user"
            raise RecoverableError(
                f"{scope} daily embedding budget of ${limit:.4f} would be exceeded "
                f"(spent ${float(spent.get(who, 0)):.4f}, this document ~${estimate:.4f})",
                code="budget_exceeded",
                defer_s=settings.budget_recheck_s,
            )
