"""Test-only stages built on the real runtime. Run one as a process:

    python -m tests.integration.stages echo|sink

`echo` consumes `uploaded`, writes one row per event, emits `parsed`. Its behaviour is chosen by
the event's filename: `transient*` fails transiently on attempt 0, `permanent*` fails for good,
`slow*` takes two seconds of work, `denied*` cannot read its file (PermissionError, every time),
`unwritable*` returns a write that fails when its wave commits (every time).
`sink` consumes `parsed` and records one effect per event.
`marked` is `echo` with a working status (`parse_queued`), and it moves the job to `parsed`.
`jobreader` reads its job (`reads_job`) and emits its document's filename as `parsed_path`;
`rename*` renames the document (`renamed.pdf`) as its write.
"""

from __future__ import annotations

import asyncio
import errno
import sys

from accessa.config import get_settings
from accessa.errors import PermanentError, TransientError
from accessa.runtime import Batched, StageApp, StageContext, Work
from accessa.runtime.server import run_stage
from schemas.events import DocumentParsed, DocumentUploaded
from schemas.topics import Stage

TABLES = """
CREATE TABLE IF NOT EXISTS public.runtime_test_rows (
  id bigint GENERATED ALWAYS AS IDENTITY, prefix text, event_id uuid, attempt int);
CREATE TABLE IF NOT EXISTS public.runtime_test_effects (
  id bigint GENERATED ALWAYS AS IDENTITY, prefix text, event_id uuid);
GRANT SELECT, INSERT, DELETE ON public.runtime_test_rows, public.runtime_test_effects
  TO accessa_ops;
"""

ROW = Batched(
    """INSERT INTO public.runtime_test_rows (prefix, event_id, attempt)
       SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[])"""
)
EFFECT = Batched(
    """INSERT INTO public.runtime_test_effects (prefix, event_id)
       SELECT * FROM unnest($1::text[], $2::uuid[])"""
)
# Fails at commit time, not in the handler: casting the row's text to int.
UNWRITABLE = Batched("SELECT $1::text[]::int[]")

echo: StageApp[None] = StageApp(
    "echo", DocumentUploaded, stage=Stage("parser", "uploaded", "parsed", "failed_parse")
)
sink: StageApp[None] = StageApp(
    "sink", DocumentParsed, stage=Stage("chunker", "parsed", "chunked", "failed_chunking")
)
marked: StageApp[None] = StageApp(
    "marked",
    DocumentUploaded,
    stage=Stage("parser", "uploaded", "parsed", "failed_parse"),
    working_status="parse_queued",
)


@echo.handle
async def on_uploaded(event: DocumentUploaded, ctx: StageContext) -> Work:
    if event.filename.startswith("transient") and ctx.attempt == 0:
        raise TransientError("the upstream service is busy", code="test_busy")
    if event.filename.startswith("permanent"):
        raise PermanentError("this document can never be processed", code="test_permanent")
    if event.filename.startswith("denied"):
        raise PermissionError(errno.EACCES, "Permission denied", f"/storage/{event.storage_path}")
    if event.filename.startswith("slow"):
        await asyncio.sleep(2)  # simulated work, so a SIGTERM arrives mid-message
    output = DocumentParsed(
        event_id=DocumentParsed.make_id(event.job_id),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        parsed_path="parsed/x.md",
        parsed_sha256="0" * 64,
        pages=1,
        parser="echo",
    )
    work = ctx.work(output).add(ROW, ctx.settings.topic_prefix, event.event_id, ctx.attempt)
    if event.filename.startswith("unwritable"):
        work.add(UNWRITABLE, "not a number")
    return work


jobreader: StageApp[None] = StageApp(
    "jobreader",
    DocumentUploaded,
    stage=Stage("parser", "uploaded", "parsed", "failed_parse"),
    reads_job=True,
)
RENAME = Batched(
    """UPDATE documents d SET filename = 'renamed.pdf'
       FROM unnest($1::uuid[]) AS w(document_id) WHERE d.document_id = w.document_id"""
)


@marked.handle
async def on_uploaded_marked(event: DocumentUploaded, ctx: StageContext) -> Work:
    work = await on_uploaded(event, ctx)  # no wait: done before its working status could land
    return work.advance("parsed")


@jobreader.handle
async def on_uploaded_read_job(event: DocumentUploaded, ctx: StageContext) -> Work:
    job = await ctx.job()
    output = DocumentParsed(
        event_id=DocumentParsed.make_id(event.job_id, str(event.event_id)),
        job_id=event.job_id,
        document_id=event.document_id,
        user_id=event.user_id,
        correlation_id=event.correlation_id,
        parsed_path=job["filename"],
        parsed_sha256="0" * 64,
        pages=1,
        parser="jobreader",
    )
    work = ctx.work(output)
    if event.filename.startswith("rename"):
        work.add(RENAME, event.document_id)
    return work


@sink.handle
async def on_parsed(event: DocumentParsed, ctx: StageContext) -> Work:
    return ctx.work(None).add(EFFECT, ctx.settings.topic_prefix, event.event_id)


if __name__ == "__main__":
    run_stage({"echo": echo, "sink": sink}[sys.argv[1]], get_settings())
