"""The crash matrix: every real stage SIGKILLed at every commit point, mid-run, then restarted.

The kill comes from the stage itself through `ACCESSA_FAULT_INJECT` (inert in production): it
fires once (a marker file survives the restart), on the second record to reach a per-record
point or on the first batch to reach `after_produce` while no other batch's handler runs (a
batch settles behind the next one: a kill at its settle could otherwise cut the next one's
paid embedding request short, a loss of that instant, not of the commit point). Whatever the
point, every document must end complete with exactly the chunks its PDF gives, each chunk text
paid for once, the buffers empty and one `completed` effect.

The killed embedder runs one request at a time: a provider response in flight at the instant
of a SIGKILL is paid for and lost whatever the design (embeddings have no idempotency key), so
"paid once" is only provable where nothing else is in flight. With concurrency, the loss is
bounded by `embed_max_inflight` requests.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from accessa.ops.localrun import LocalPipeline
from tests.e2e.ledger import REPORT, Batch
from tests.utils import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.reliability]

DOCS = int(os.environ.get("ACCESSA_RELIABILITY_DOCS", "6"))
POINTS = ("before_db_commit", "after_db_commit", "after_produce")
STAGES = ("parser", "chunker", "embedder", "finalizer")
CASES = [(stage, point) for stage in STAGES for point in POINTS] + [("embedder", "mid_embed")]


@pytest.fixture(scope="module", autouse=True)
def plain_stages_afterwards(pipeline: LocalPipeline) -> Iterator[None]:
    """A fired fault never fires again, but the killed embedder's settings stay: restart
    each stage with the pipeline's own settings once the matrix is done."""
    yield
    for stage in STAGES:
        pipeline.stop(stage)
        pipeline.start(stage)
    pipeline.wait_ready(tuple(STAGES))


@pytest.mark.parametrize(("stage", "point"), CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_a_stage_killed_at_a_commit_point_loses_and_duplicates_nothing(
    pipeline: LocalPipeline, stage: str, point: str
) -> None:
    # Record-level points fire on the second record, mid-batch; `after_produce` is reached once
    # per polled batch and a small batch may hold every document: it fires on the first.
    nth = 1 if point == "after_produce" else 2
    fault = {"ACCESSA_FAULT_INJECT": f"{stage}:{point}:{nth}"}
    if point == "mid_embed":  # several provider batches per document, so the kill is mid-way
        fault["ACCESSA_EMBED_BATCH_INPUTS"] = "2"
    if stage == "embedder":
        fault |= {"ACCESSA_STAGE_CONCURRENCY": "1", "ACCESSA_EMBED_MAX_INFLIGHT": "1"}
    for other in STAGES:  # a case that failed may have left a stage down
        if other != stage and pipeline.procs[other].poll() is not None:
            pipeline.start(other)
            pipeline.wait_ready((other,))
    pipeline.stop(stage)
    doomed = pipeline.start(stage, **fault)
    pipeline.wait_ready((stage,))
    batch = Batch.make(pipeline, DOCS)
    try:
        asyncio.run(batch.upload())

        async def killed() -> bool:
            return doomed.poll() == -signal.SIGKILL

        try:
            asyncio.run(wait_for(killed, timeout=120, interval=0.2, what=f"{stage} to die"))
        except AssertionError as e:
            raise AssertionError(f"{e}; jobs: {asyncio.run(batch.statuses())}") from e
    finally:
        if pipeline.procs[stage].poll() is not None:
            pipeline.start(stage, **fault)  # the marker keeps the fault from firing again
            pipeline.wait_ready((stage,))

    asyncio.run(batch.wait_finished())
    audit = asyncio.run(batch.audit())
    REPORT.kill(stage, point, audit)
    assert audit.problems == []
    assert audit.complete == DOCS
    assert audit.chunks == sum(len(u.chunk_ids) for u in batch.uploads)
