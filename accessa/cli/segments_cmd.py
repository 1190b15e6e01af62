"""`accessa segments`: the chunk segments of document_chunks (accessa/segments.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from accessa import segments
from accessa.cli.output import console, emit_json
from accessa.config import get_settings
from accessa.db import connect

app = typer.Typer(help="Chunk segments: growing (exact search) and sealed (HNSW).")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


async def _with_connection(work: Any) -> Any:
    settings = get_settings()
    options = segments.connection_settings(settings)
    conn = await connect(
        settings.dsn_for(segments.PROCESS), server_settings=options["server_settings"]
    )
    try:
        return await work(conn)
    finally:
        await conn.close()


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json({"segments": rows})
        return
    table = Table("segment", "state", "rows", "HNSW index", "sealed at", "seal s")
    for r in rows:
        seconds = "" if r["seal_seconds"] is None else f"{r['seal_seconds']:.1f}"
        table.add_row(
            str(r["segment"]),
            r["state"],
            str(r["rows"]),
            "yes" if r["indexed"] else "no",
            str(r["sealed_at"] or ""),
            seconds,
        )
    console.print(table)


@app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Every segment: state, rows (the growing one's exact), whether its index exists."""
    _show(asyncio.run(_with_connection(segments.stats)), as_json)


@app.command("seal")
def seal(
    now: Annotated[
        bool, typer.Option(help="Seal the growing segment whatever its size and age.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """One compactor pass in the foreground: roll the growing segment if it is due
    (ACCESSA_SEGMENT_SEAL_ROWS / _AGE_S; `--now`: if it holds any row) and seal every segment
    left 'sealing'. Idempotent; a second compactor waits for the first."""
    settings = get_settings()
    rows, age = (1, 0.001) if now else (settings.segment_seal_rows, settings.segment_seal_age_s)

    async def work(conn: Any) -> tuple[segments.Pass, list[dict[str, Any]]]:
        done = await segments.compact_once(conn, rows, age)
        return done, await segments.stats(conn)

    done, rows_ = asyncio.run(_with_connection(work))
    if as_json:
        emit_json({"rolled": done.rolled, "sealed": done.sealed, "segments": rows_})
        return
    console.print(
        f"rolled: {done.rolled if done.rolled is not None else 'nothing due'}; sealed: "
        + (", ".join(f"{s} ({t:.1f} s)" for s, t in done.sealed.items()) or "none")
    )
    _show(rows_, as_json=False)
