"""`accessa reprocess`: rebuild documents as another chunker version or embedding model beside
the active one, switch each atomically when it is whole, garbage-collect the old version later."""

from __future__ import annotations

import asyncio
import time
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from accessa.cli.output import Exit, console, emit_json, err_console, fail
from accessa.config import get_settings
from accessa.db import create_pool
from accessa.ops import reprocess as rp

app = typer.Typer()  # help: the callback's docstring
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DocOpt = Annotated[uuid.UUID | None, typer.Option(help="Only this document id.")]


class FromStage(StrEnum):
    chunk = "chunk"
    embed = "embed"


@app.callback(invoke_without_command=True)
def reprocess(
    ctx: typer.Context,
    document: Annotated[uuid.UUID | None, typer.Option(help="The document to reprocess.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every searchable document.")] = False,
    from_stage: Annotated[
        FromStage | None,
        typer.Option(
            help="`chunk`: chunk the stored markdown again, then embed; `embed`: embed the active "
            "chunks again."
        ),
    ] = None,
    chunker_version: Annotated[
        str | None,
        typer.Option(
            help="With --from-stage chunk: `markdown-simple@1` or `markdown-simple@1?target=N"
            "[&overlap=M]` (default ACCESSA_CHUNKER_VERSION)."
        ),
    ] = None,
    embed_model: Annotated[
        str | None,
        typer.Option(
            help="text-embedding-3-small, text-embedding-3-large or text-embedding-ada-002 "
            "(default ACCESSA_EMBED_MODEL)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="List what would be reprocessed.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the jobs until they end.")] = False,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 900,
    as_json: JsonOpt = False,
) -> None:
    """Build each document's chunks as the target version beside the active one (which stays
    searchable), then switch it atomically. Exit 1 if a named document cannot be reprocessed
    or, with --wait, a job fails."""
    if ctx.invoked_subcommand is not None:
        return
    if (document is None) == (not all_):
        fail("give --document ID or --all", Exit.USAGE, as_json=as_json)
    if from_stage is None:
        fail("--from-stage chunk|embed is required", Exit.USAGE, as_json=as_json)
    settings = get_settings()
    try:
        target = rp.resolve_target(settings, from_stage.value, chunker_version, embed_model)
    except ValueError as exc:
        fail(str(exc), Exit.USAGE, as_json=as_json)
    run = f"reprocess-{uuid.uuid4()}"

    async def go() -> tuple[list[rp.Planned], list[dict[str, Any]]]:
        pool = await create_pool(settings)
        try:
            planned = await rp.plan(pool, target, document=document)
            if dry_run or not planned:
                return planned, []
            with _progress(as_json) as progress:
                task = progress.add_task("publishing", total=len(planned))
                await rp.start(
                    settings,
                    pool,
                    target,
                    planned,
                    correlation_id=run,
                    on_each=lambda _: progress.advance(task),
                )
            started = [p.job_id for p in planned if p.job_id and p.action in ("queue", "resume")]
            if not wait or not started:
                return planned, []
            return planned, await _follow(pool, started, timeout, as_json)
        finally:
            await pool.close()

    planned, final = asyncio.run(go())
    if document is not None and not planned:
        fail(f"no document {document}", Exit.NOT_FOUND, as_json=as_json)
    failed = [j for j in final if j["state"] != "done"]
    refused = [p for p in planned if document is not None and p.action in ("busy", "not_ready")]
    if as_json:
        emit_json(
            {
                "run": run,
                "dry_run": dry_run,
                "documents": [p.as_dict() for p in planned],
                "jobs": final,
            }
        )
    else:
        table = Table("document", "active", "target", "action", "job")
        for p in planned:
            active = f"{p.active_chunker_version} / {p.active_embed_model}"
            action = p.action + (" (dry run)" if dry_run else "")
            table.add_row(
                str(p.document_id),
                active,
                f"{p.chunker_version} / {p.embed_model}",
                action,
                str(p.job_id or ""),
            )
        console.print(table if planned else "no searchable documents")
        if not dry_run:
            console.print(
                f"run {run}: {sum(p.action == 'queue' for p in planned)} queued, "
                f"{sum(p.action == 'resume' for p in planned)} resumed"
            )
        for p in refused:
            err_console.print(f"[red]{p.document_id}: {p.action}[/red] {p.reason}")
        for job in failed:
            error = job["error"] or {"code": "timed_out", "message": f"still {job['status']}"}
            err_console.print(
                f"[red]{job['document_id']}: {job['status']}[/red] "
                f"{error.get('code')}: {error.get('message')}"
            )
    if refused or failed:
        raise typer.Exit(int(Exit.FAILED))


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        disable=quiet,
    )


async def _follow(
    pool: Any, job_ids: list[uuid.UUID], timeout_s: float, quiet: bool
) -> list[dict[str, Any]]:
    """Poll the jobs until each is done or dead-lettered, or until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    with _progress(quiet) as progress:
        task = progress.add_task("reprocessing", total=len(job_ids))
        while True:
            current = await rp.jobs_progress(pool, job_ids)
            ended = sum(j["state"] in ("done", "deadletter") for j in current)
            progress.update(task, completed=ended)
            if ended == len(job_ids) or time.monotonic() > deadline:
                return current
            await asyncio.sleep(1.0)  # a poll interval, the deadline decides


@app.command("gc")
def gc_command(
    grace: Annotated[
        float | None,
        typer.Option(
            help="Seconds a replaced version outlives the switch (default "
            "ACCESSA_REPROCESS_GRACE_S); 0 deletes every replaced version now."
        ),
    ] = None,
    document: DocOpt = None,
    dry_run: Annotated[bool, typer.Option(help="List what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete versions that are no longer active, once their document has been on its active
    version for the grace period."""
    settings = get_settings()
    grace_s = settings.reprocess_grace_s if grace is None else grace
    if grace_s < 0:
        fail("--grace must be 0 or more", Exit.USAGE, as_json=as_json)

    async def go() -> list[dict[str, Any]]:
        pool = await create_pool(settings)
        try:
            return await rp.gc(pool, grace_s=grace_s, document=document, dry_run=dry_run)
        finally:
            await pool.close()

    rows = asyncio.run(go())
    if as_json:
        emit_json(
            {
                "grace_s": grace_s,
                "dry_run": dry_run,
                "versions": rows,
                "chunks": sum(r["chunks"] for r in rows),
            }
        )
        return
    table = Table("document", "chunker version", "embed model", "chunks")
    for r in rows:
        table.add_row(r["document_id"], r["chunker_version"], r["embed_model"], str(r["chunks"]))
    console.print(table if rows else "no replaced versions past the grace period")
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {sum(r['chunks'] for r in rows)} chunk(s) of {len(rows)} version(s)")


@app.command("status")
def status_command(
    document: DocOpt = None,
    run: Annotated[str | None, typer.Option(help="Only this run (its correlation id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many jobs.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Reprocess jobs, newest first; with --document, also the versions of its chunks."""
    settings = get_settings()

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        pool = await create_pool(settings)
        try:
            found = await rp.recent_jobs(pool, document=document, run=run, limit=limit)
            return found, await rp.versions(pool, document) if document else []
        finally:
            await pool.close()

    found, versions = asyncio.run(go())
    if as_json:
        emit_json({"jobs": found, "versions": versions})
        return
    table = Table("job", "document", "target", "status", "%", "created")
    for j in found:
        target = f"{j['target']['chunker_version']} / {j['target']['embed_model']}"
        table.add_row(
            j["job_id"],
            j["document_id"],
            target,
            j["status"],
            str(j["percent"]),
            j["created_at"][:19],
        )
    console.print(table if found else "no reprocess jobs")
    if versions:
        vtable = Table("chunker version", "embed model", "chunks", "active")
        for v in versions:
            vtable.add_row(
                v["chunker_version"],
                v["embed_model"],
                str(v["chunks"]),
                "yes" if v["active"] else "",
            )
        console.print(vtable)
