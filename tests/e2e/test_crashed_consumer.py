"""A poison pill no `except` catches: the parser is SIGKILLed every time it starts on one
document (`ACCESSA_FAULT_INJECT=parser:kill_on_document:<id>`, inert in production) and is
restarted after each death, as Kubernetes would. The runtime counts handler starts in
Postgres before they happen, so after `max_delivery_attempts` starts the document goes to the
DLQ as `crashed_consumer`, its job fails, and the rest of its batch completes, exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from accessa.db import create_pool
from accessa.ops.localrun import LocalPipeline
from schemas.headers import Headers
from tests.e2e.ledger import Batch
from tests.utils import read_topic, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.reliability]

DOCS = int(os.environ.get("ACCESSA_RELIABILITY_DOCS", "6"))
STAGES = ("parser", "chunker", "embedder", "finalizer")


@pytest.fixture
def plain_parser_afterwards(pipeline: LocalPipeline) -> Iterator[None]:
    yield
    pipeline.stop("parser")
    pipeline.start("parser")
    pipeline.wait_ready(("parser",))


async def _job(pipeline: LocalPipeline, job_id: uuid.UUID) -> dict:
    pool = await create_pool(pipeline.settings, min_size=1, max_size=1)
    try:
        return dict(await pool.fetchrow("SELECT * FROM upload_jobs WHERE job_id = $1", job_id))
    finally:
        await pool.close()


async def _attempt_rows(pipeline: LocalPipeline, group: str) -> int:
    pool = await create_pool(pipeline.settings, min_size=1, max_size=1)
    try:
        return await pool.fetchval(
            "SELECT count(*) FROM delivery_attempts WHERE consumer_group LIKE $1", f"{group}%"
        )
    finally:
        await pool.close()


async def _died_or_failed(
    pipeline: LocalPipeline, proc: subprocess.Popen[bytes], job_id: uuid.UUID
) -> str:
    if proc.poll() is not None:
        return "died"
    return "failed" if (await _job(pipeline, job_id))["status"] == "failed_parse" else ""


def _run_until_it_survives(
    pipeline: LocalPipeline, fault: dict[str, str], job_id: uuid.UUID
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start the parser, and again after each SIGKILL, until the doomed job has failed with
    the parser alive; returns how many times it was killed."""
    kills = 0
    while True:
        proc = pipeline.start("parser", **fault)

        async def died_or_failed(p: subprocess.Popen[bytes] = proc) -> str:
            return await _died_or_failed(pipeline, p, job_id)

        outcome = asyncio.run(
            wait_for(
                died_or_failed,
                timeout=180,
                interval=0.5,
                what=f"the parser to die or job {job_id} to fail",
            )
        )
        if outcome == "failed":
            return kills, proc
        assert proc.returncode == -signal.SIGKILL, f"parser exited {proc.returncode}"
        kills += 1
        assert kills <= pipeline.settings.max_delivery_attempts, "the poison pill came back"


def test_a_document_that_kills_the_parser_every_time_is_dead_lettered_as_crashed_consumer(
    pipeline: LocalPipeline, plain_parser_afterwards: None
) -> None:
    for other in STAGES:  # a failed test before may have left a stage down
        if pipeline.procs[other].poll() is not None:
            pipeline.start(other)
            pipeline.wait_ready((other,))
    pipeline.stop("parser")  # the whole batch waits in `uploaded`: one poll holds them all
    batch = Batch.make(pipeline, DOCS)
    asyncio.run(batch.upload())
    doomed = batch.uploads[DOCS // 2]
    fault = {"ACCESSA_FAULT_INJECT": f"parser:kill_on_document:{doomed.document_id}"}

    kills, survivor = _run_until_it_survives(pipeline, fault, doomed.job_id)

    assert kills == pipeline.settings.max_delivery_attempts
    assert survivor.poll() is None
    job = asyncio.run(_job(pipeline, doomed.job_id))
    assert (job["status"], job["state"]) == ("failed_parse", "deadletter")
    assert job["last_error"]["code"] == "crashed_consumer"
    prefix = pipeline.settings.topic_prefix
    # The session's pipeline also holds other tests' dead letters (the corpus' image-only
    # files, ...): this batch's are the ones keyed by its documents.
    ours = {str(u.document_id) for u in batch.uploads}
    dead = [
        r
        for r in asyncio.run(read_topic(pipeline.settings, f"{prefix}uploaded.dlq"))
        if r.headers.get(Headers.DOCUMENT_ID) in ours
    ]
    assert [r.headers[Headers.ERROR_CODE] for r in dead] == ["crashed_consumer"]
    assert dead[0].headers[Headers.JOB_ID] == str(doomed.job_id)
    assert f"died {kills} times" in dead[0].headers[Headers.ERROR_MESSAGE]

    # The others complete, none lost, none twice; the doomed one is expected to have failed.
    batch.uploads.remove(doomed)
    asyncio.run(batch.wait_finished())
    audit = asyncio.run(batch.audit())
    assert audit.problems == []
    assert audit.complete == DOCS - 1
    assert audit.chunks == sum(len(u.chunk_ids) for u in batch.uploads)
    # Finished records leave no row behind.
    group = f"{prefix}{pipeline.settings.group_prefix}parser"
    asyncio.run(wait_for(lambda: _zero(pipeline, group), what="no delivery_attempts rows"))


async def _zero(pipeline: LocalPipeline, group: str) -> bool:
    return await _attempt_rows(pipeline, group) == 0
