"""`accessa status [--json] [--watch]`: where every document is, per stage."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from accessa.cli.output import Exit, console, emit_json, fail
from accessa.config import get_settings
from accessa.db import NotReady, create_pool, describe_error
from accessa.status import pipeline_status


async def _collect() -> dict[str, Any]:
    settings = get_settings()
    try:
        pool = await create_pool(settings, min_size=1, max_size=2)
    except Exception as exc:  # one readable line, e.g. a TLS certificate that fails to verify
        raise NotReady(f"postgres: {describe_error(exc)}") from exc
    try:
        return await pipeline_status(settings, pool)
    finally:
        await pool.close()


def render(data: dict[str, Any]) -> Group:
    stages = Table(
        "stage", "replicas", "lag", "in flight", "docs/min", "errors/h", "DLQ", title="stages"
    )
    for name, s in data["stages"].items():
        lag = f"[yellow]{s['lag']}[/yellow]" if s["lag"] else "0"
        dlq = f"[red]{s['dlq_depth']}[/red]" if s["dlq_depth"] else "0"
        stages.add_row(
            name,
            str(s["replicas"]),
            lag,
            str(s["in_flight"]),
            str(s["documents_last_minute"]),
            str(s["errors_last_hour"]),
            dlq,
        )
    jobs = Table("status", "state", "jobs", title="jobs")
    for row in data["jobs"]:
        jobs.add_row(row["status"], row["state"], str(row["n"]))
    parts: list[Any] = [stages, jobs]
    if oldest := data["oldest_unfinished"]:
        parts.append(
            f"oldest unfinished: job {oldest['job_id']} at {oldest['stage']} "
            f"({oldest['progress'].get('percent', 0)}%, {oldest['state']}) "
            f"for {oldest['age_s']:.0f}s"
        )
    if failed := data.get("outbox_failed"):
        parts.append(f"[red]outbox: {failed} undeliverable row(s)[/red] (accessa dlq list)")
    return Group(*parts)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[bool, typer.Option(help="Refresh every --interval seconds.")] = False,
    interval: Annotated[float, typer.Option(help="Refresh period for --watch.")] = 2.0,
) -> None:
    """Per stage: replicas, lag, throughput, errors, DLQ depth; jobs by state; the oldest
    unfinished job. Exit 3 if Kafka or Postgres cannot be reached."""
    try:
        data = asyncio.run(_collect())
    except Exception as exc:
        fail(f"cannot read pipeline status: {exc}", Exit.UNHEALTHY, as_json=as_json)
    if as_json:
        emit_json(data)
        return
    if not watch:
        console.print(render(data))
        return
    with Live(render(data), console=console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(interval)  # the refresh period
                live.update(render(asyncio.run(_collect())))
        except KeyboardInterrupt:
            pass
