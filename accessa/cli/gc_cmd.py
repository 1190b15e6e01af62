"""`accessa gc`: delete the rows past their retention (see accessa/ops/retention.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from accessa.cli.output import Exit, console, emit_json, fail
from accessa.config import get_settings
from accessa.db import create_pool
from accessa.ops import retention

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def gc(
    dry_run: Annotated[bool, typer.Option(help="Count what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete stage dedup rows, published outbox rows, cached embeddings and redrive records
    older than their ACCESSA_RETENTION_* (Postgres only). Exit 2 if a retention is too short
    to keep deduplication correct, 3 if Postgres is unreachable."""
    settings = get_settings()
    try:
        retention.check(settings)
    except retention.RetentionUnsafe as exc:
        fail(str(exc), Exit.USAGE, as_json=as_json)

    async def go() -> list[retention.Outcome]:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            return await retention.collect(settings, pool, dry_run=dry_run)
        finally:
            await pool.close()

    outcomes = asyncio.run(go())
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "tables": {o.table: {"retention_days": o.days, "rows": o.rows} for o in outcomes},
            }
        )
        return
    table = Table("table", "retention (days)", "would delete" if dry_run else "deleted")
    for o in outcomes:
        table.add_row(o.table, f"{o.days:g}", str(o.rows))
    console.print(table)
