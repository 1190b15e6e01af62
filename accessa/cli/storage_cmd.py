"""`accessa storage gc`: delete the raw objects no live upload needs (accessa/ops/storage_gc.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from accessa.cli.output import Exit, console, emit_json, err_console, fail
from accessa.config import get_settings
from accessa.db import create_pool
from accessa.ops import storage_gc
from accessa.storage import make_storage

app = typer.Typer(help="Object storage housekeeping.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command("gc")
def gc_command(
    grace: Annotated[
        float | None,
        typer.Option(
            help="Only objects at least this many seconds old (default ACCESSA_STORAGE_GC_GRACE_S)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="List what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete raw objects that no document row names (orphans) and those of expired or
    abandoned uploads, once older than the grace period. Exit 1 if a delete failed, 3 if
    Postgres or the object store cannot be used."""
    from botocore.exceptions import BotoCoreError, ClientError

    settings = get_settings()
    grace_s = settings.storage_gc_grace_s if grace is None else grace
    if grace_s < 0:
        fail("--grace must be 0 or more", Exit.USAGE, as_json=as_json)

    async def go() -> storage_gc.Report:
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                console=err_console,
                disable=as_json,
            ) as progress:
                task = progress.add_task("scanning raw objects", total=None)

                def on_page(r: storage_gc.Report) -> None:
                    progress.update(
                        task,
                        description=f"{r.scanned} scanned, "
                        f"{len(r.doomed)} to delete, {r.deleted} deleted",
                    )

                return await storage_gc.collect(
                    pool,
                    make_storage(settings),
                    grace_s=grace_s,
                    dry_run=dry_run,
                    abandoned_after_s=settings.signed_url_ttl_s + settings.upload_expiry_grace_s,
                    on_page=on_page,
                )
        finally:
            await pool.close()

    try:
        report = asyncio.run(go())
    except (BotoCoreError, ClientError) as exc:
        fail(
            f"object store {settings.s3_endpoint_url or 'S3'}: {exc}",
            Exit.UNHEALTHY,
            as_json=as_json,
        )
    if as_json:
        emit_json(
            {
                "grace_s": grace_s,
                "dry_run": dry_run,
                "scanned": report.scanned,
                "deleted": report.deleted,
                "objects": [d.as_dict() for d in report.doomed],
                "errors": report.errors,
            }
        )
    else:
        table = Table("key", "reason", "bytes", "last written")
        for d in report.doomed:
            table.add_row(d.key, d.reason, str(d.size), d.modified.isoformat(timespec="seconds"))
        if report.doomed:
            console.print(table)
        verb = "would delete" if dry_run else "deleted"
        count = len(report.doomed) if dry_run else report.deleted
        console.print(
            f"{report.scanned} raw object(s) scanned; {verb} {count} older than {grace_s:g} s"
        )
        for e in report.errors:
            err_console.print(f"[red]{e['key']}[/red] {e['error']}", soft_wrap=True)
    if report.errors:
        raise typer.Exit(int(Exit.FAILED))
