"""`accessa cost`: embedding tokens and spend per user, and today's budget use."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from accessa import cost as spend
from accessa.cli.output import console, emit_json
from accessa.config import get_settings
from accessa.db import create_pool


async def cost_report(user: uuid.UUID | None, since: datetime | None) -> dict[str, Any]:
    settings = get_settings()
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        return await spend.cost_report(pool, settings, user=user, since=since)
    finally:
        await pool.close()


def cost(
    user: Annotated[uuid.UUID | None, typer.Option(help="Only this user.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Jobs created from this time on.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Embedding tokens and USD per user (and today's spend against the daily budgets)."""
    report = asyncio.run(cost_report(user, since))
    if as_json:
        emit_json(report)
        return
    table = Table("user", "jobs", "tokens", "USD", "USD today")
    for u in report["users"]:
        table.add_row(
            u["user_id"],
            str(u["jobs"]),
            str(u["tokens"]),
            f"{u['usd']:.6f}",
            f"{u['usd_today']:.6f}",
        )
    console.print(table)
    b = report["budgets"]
    console.print(
        f"total ${report['total_usd']:.6f}; today (all users) "
        f"${report['today_global_usd']:.6f}; budgets: user {b['user_daily_usd']}, "
        f"global {b['global_daily_usd']}"
    )
