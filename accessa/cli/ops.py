"""`accessa dlq|replay|consumers`: the operator's tools for dead letters and reprocessing."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from accessa import operations as ops
from accessa.cli.output import Exit, console, emit_json, fail
from accessa.config import Settings, get_settings
from accessa.db import create_pool

dlq_app = typer.Typer(help="Dead-letter topics: list, show and redrive records.")
consumers_app = typer.Typer(help="Consumer groups of the stages.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TopicOpt = Annotated[str | None, typer.Option(help="A stage input topic, e.g. `uploaded`.")]
DocOpt = Annotated[str | None, typer.Option(help="Only this document id.")]
SinceOpt = Annotated[datetime | None, typer.Option(help="Only records from this time on.")]


@dlq_app.command("list")
def dlq_list(
    topic: TopicOpt = None,
    document: DocOpt = None,
    since: SinceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every dead-lettered record with its error, and outbox rows that could never be
    published (id `outbox:<n>`)."""
    settings = get_settings()
    records = asyncio.run(ops.dlq_records(settings, topic=topic, document=document, since=since))
    rows = [ops.summarize(r) for r in records] + asyncio.run(
        _outbox_failures(settings, topic, document, since)
    )
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "failed at", "code", "message", "document")
    for row in rows:
        table.add_row(
            row["id"],
            row["failed_at"][:19],
            row["error_code"],
            row["error_message"][:60],
            row["document_id"],
        )
    console.print(table if rows else "no dead-lettered records")


async def _outbox_failures(
    settings: Settings, topic: str | None, document: str | None, since: datetime | None
) -> list[dict[str, Any]]:
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        return await ops.outbox_failures(
            pool, settings, topic=topic, document=document, since=since
        )
    finally:
        await pool.close()


@dlq_app.command("show")
def dlq_show(
    dlq_id: Annotated[str, typer.Argument(help="`<topic>:<partition>:<offset>` from list.")],
    as_json: JsonOpt = False,
) -> None:
    """One record: all headers (error, stack, original coordinates) and the payload."""
    if dlq_id.startswith("outbox:"):
        rows = asyncio.run(_outbox_failures(get_settings(), None, None, None))
        row = next((r for r in rows if r["id"] == dlq_id), None)
        if row is None:
            fail(f"no record {dlq_id}", Exit.NOT_FOUND, as_json=as_json)
        if as_json:
            emit_json(row)
        else:
            for key, value in row.items():
                console.print(f"[bold]{key}[/bold]: {value}")
        return
    record = asyncio.run(ops.dlq_record(get_settings(), dlq_id))
    if record is None:
        fail(f"no record {dlq_id}", Exit.NOT_FOUND, as_json=as_json)
    body = {
        **ops.summarize(record),
        "headers": record.headers,
        "payload": (record.value or b"").decode(errors="replace"),
    }
    if as_json:
        emit_json(body)
    else:
        for key, value in body["headers"].items():
            console.print(f"[bold]{key}[/bold]: {value}")
        console.print(body["payload"])


@dlq_app.command("redrive")
def dlq_redrive(
    topic: TopicOpt = None,
    document: DocOpt = None,
    since: SinceOpt = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would be redriven.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send matching records back to their stage with fresh attempts (each record once)."""

    async def go() -> list[ops.Redrive]:
        settings = get_settings()
        records = await ops.dlq_records(settings, topic=topic, document=document, since=since)
        pool = await create_pool(settings)
        try:
            return await ops.redrive(settings, pool, records, dry_run=dry_run)
        finally:
            await pool.close()

    results = asyncio.run(go())
    lost = [r for r in results if r.status == "value_unavailable"]
    if as_json:
        emit_json([dataclasses.asdict(r) for r in results])
    else:
        for r in results:
            console.print(f"{r.id} → {r.target}: {r.status}")
        console.print(f"{sum(r.status == 'redriven' for r in results)} redriven")
        if lost:
            console.print(
                f"{len(lost)} could not be redriven: the DLQ copy omitted its value "
                "and the original record is gone (retention)"
            )
    if lost:
        raise typer.Exit(1)


def replay(
    topic: Annotated[str, typer.Option(help="Topic to replay, e.g. `chunked`.")],
    from_: Annotated[datetime | None, typer.Option("--from", help="Start time.")] = None,
    to: Annotated[datetime | None, typer.Option(help="End time (exclusive).")] = None,
    document: DocOpt = None,
    user: Annotated[str | None, typer.Option(help="Only this user's events.")] = None,
    dry_run: Annotated[bool, typer.Option(help="List the events only.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-publish matching events (found by time, filtered by key/headers) for reprocessing.
    Already-processed events are deduplicated by the stage: replay is always safe. Refuses
    (exit 1) a --from older than the topic's retention has kept."""
    try:
        records = asyncio.run(
            ops.replay(
                get_settings(),
                topic,
                since=from_,
                until=to,
                document=document,
                user=user,
                dry_run=dry_run,
            )
        )
    except ops.WindowExpired as exc:
        fail(str(exc), Exit.FAILED, as_json=as_json)
    if as_json:
        emit_json(
            {
                "replayed": 0 if dry_run else len(records),
                "dry_run": dry_run,
                "events": [r.id for r in records],
            }
        )
    else:
        verb = "would replay" if dry_run else "replayed"
        console.print(f"{verb} {len(records)} event(s) of {topic}")


@consumers_app.command("reset")
def consumers_reset(
    group: Annotated[str, typer.Option(help="Stage: parser, chunker, embedder or finalizer.")],
    to_datetime: Annotated[datetime | None, typer.Option(help="Offsets at this time.")] = None,
    shift_by: Annotated[int | None, typer.Option(help="Move by N (negative = back).")] = None,
    to_earliest: Annotated[bool, typer.Option(help="The beginning of the topic.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Show the plan only.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move a stopped stage's committed offsets. Refuses (exit 1) while consumers run."""
    if sum(x is not None and x is not False for x in (to_datetime, shift_by, to_earliest)) != 1:
        fail(
            "give exactly one of --to-datetime, --shift-by, --to-earliest",
            Exit.USAGE,
            as_json=as_json,
        )
    try:
        plan = asyncio.run(
            ops.reset_offsets(
                get_settings(),
                group,
                to_datetime=to_datetime,
                shift_by=shift_by,
                to_earliest=to_earliest,
                dry_run=dry_run,
            )
        )
    except ops.GroupActive as exc:
        fail(
            f"{exc}: stop the stage first (offsets of a live group cannot be moved)",
            as_json=as_json,
        )
    if as_json:
        emit_json({"group": group, "dry_run": dry_run, "partitions": plan})
        return
    table = Table("partition", "current", "target")
    for part, row in plan.items():
        table.add_row(part, str(row["current"]), str(row["target"]))
    console.print(table)
    console.print("dry run: nothing changed" if dry_run else "offsets moved")
