"""The four real stages together, and the operator tools on their topics."""

from __future__ import annotations

import random

import pytest

from accessa import operations as ops
from accessa.status import kafka_status
from accessa.topic_scan import scan
from mocks.policy_pdf import make_policy_pdf
from schemas.headers import Headers
from tests.integration.conftest import Stages
from tests.utils import CORPUS, produce, produce_events, uploaded_event, wait_for

pytestmark = pytest.mark.integration


async def test_a_real_pdf_goes_through_all_four_stages_to_searchable_chunks(
    stages: Stages,
) -> None:
    await stages.start()
    event = await stages.submit((CORPUS / "pdflatex-4-pages.pdf").read_bytes())
    job = await stages.finished(event.job_id)
    assert (job["status"], job["state"]) == ("complete", "done"), job["last_error"]
    rows = await stages.pool.fetch(
        "SELECT ordinal, metadata, vector_dims(embedding) AS dims FROM document_chunks "
        "WHERE document_id = $1 ORDER BY ordinal",
        event.document_id,
    )
    assert len(rows) == job["chunk_count"] == job["vector_count"] > 0
    assert {r["dims"] for r in rows} == {1536}
    assert all(r["metadata"]["page_start"] >= 1 for r in rows)
    buffered = await stages.pool.fetchval(
        "SELECT (SELECT count(*) FROM document_chunk_buffer WHERE job_id = $1) + "
        "(SELECT count(*) FROM document_vector_buffer WHERE job_id = $1)",
        event.job_id,
    )
    assert buffered == 0
    trail = await stages.pool.fetch(
        "SELECT status, correlation_id FROM events WHERE job_id = $1 AND kind = 'advanced' "
        "ORDER BY id",
        event.job_id,
    )
    assert [r["status"] for r in trail][-1] == "complete"
    assert {r["correlation_id"] for r in trail} == {event.correlation_id}


async def test_redriving_a_fixed_cause_completes_the_job(stages: Stages) -> None:
    pdf = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()
    await stages.start()
    event = await stages.submit(pdf, store=False)  # the raw file never arrived
    failed = await stages.finished(event.job_id)
    assert (failed["status"], failed["last_error"]["code"]) == ("failed_parse", "raw_file_missing")

    await stages.storage.put(event.storage_path, pdf)  # the operator fixes the cause

    # The job is marked failed before its DLQ copy is produced: wait for the copy.
    async def dead_lettered() -> list:
        return await ops.dlq_records(stages.settings, document=str(event.document_id))

    records = await wait_for(dead_lettered, timeout=30, what="the DLQ record")
    assert len(records) == 1
    results = await ops.redrive(stages.settings, stages.pool, records)
    assert [r.status for r in results] == ["redriven"]
    again = await ops.redrive(stages.settings, stages.pool, records)
    assert [r.status for r in again] == ["already_redriven"]

    async def complete() -> bool:
        return (await stages.job(event.job_id))["status"] == "complete"

    await wait_for(complete, timeout=60, what="the redriven job to complete")


async def test_replaying_processed_events_changes_no_rows_and_costs_no_embedding_calls(
    stages: Stages,
) -> None:
    await stages.start()
    event = await stages.submit((CORPUS / "pdflatex-4-pages.pdf").read_bytes())
    assert (await stages.finished(event.job_id))["status"] == "complete"
    before_chunks = await stages.pool.fetchval("SELECT count(*) FROM document_chunks")
    before_events = await stages.pool.fetchval("SELECT count(*) FROM events")
    before_calls = (await stages.openai_stats())["inputs_embedded"]

    topics = ("uploaded", "parsed", "chunked", "embedded")
    planned = [await ops.replay(stages.settings, t, dry_run=True) for t in topics]
    assert [len(p) for p in planned] == [1, 1, 1, 1]
    for topic in topics:
        await ops.replay(stages.settings, topic)

    prefix = stages.settings.topic_prefix

    async def all_consumed() -> bool:
        lag = await kafka_status(stages.settings)
        return all(stage["lag"] == 0 for stage in lag.values())

    await wait_for(all_consumed, timeout=60, what="the replayed events to be consumed")
    assert await stages.pool.fetchval("SELECT count(*) FROM document_chunks") == before_chunks
    assert await stages.pool.fetchval("SELECT count(*) FROM events") == before_events
    assert (await stages.openai_stats())["inputs_embedded"] == before_calls
    completed = [r async for r in scan(stages.settings, f"{prefix}completed")]
    assert len({r.value for r in completed}) == 1  # any re-emitted `completed` is identical


async def test_offsets_cannot_be_reset_while_the_stage_runs(stages: Stages) -> None:
    await stages.start("parser")
    event = await stages.submit(b"%PDF-1.4 not really", filename="bad.pdf")
    await stages.finished(event.job_id)
    with pytest.raises(ops.GroupActive):
        await ops.reset_offsets(stages.settings, "parser", to_earliest=True)
    await stages.stop("parser")
    plan = await ops.reset_offsets(stages.settings, "parser", to_earliest=True)
    assert {row["target"] for row in plan.values()} == {0}


async def test_over_budget_documents_wait_and_resume_when_the_budget_allows(
    stages: Stages,
) -> None:
    stages.settings.budget_user_daily_usd = 1e-9  # less than any document costs
    stages.settings.budget_recheck_s = 0.5
    await stages.start()
    # Text nobody has embedded yet: cached chunks cost nothing and never wait for a budget.
    event = await stages.submit(make_policy_pdf(seed=random.randrange(10**9), pages=2))

    async def paused() -> bool:
        job = await stages.job(event.job_id)
        return job["state"] == "retryable" and job["last_error"]["code"] == "budget_exceeded"

    await wait_for(paused, timeout=60, what="the job to pause on its budget")
    assert (await stages.openai_stats())["inputs_embedded"] == 0  # nothing was paid

    stages.settings.budget_user_daily_usd = 10.0  # the budget is raised
    job = await stages.finished(event.job_id)
    assert (job["status"], job["retry_count"]) == ("complete", 0)
    assert float(job["cost_usd"]) > 0


async def test_the_llamaparse_backend_parses_through_the_mock_api_to_completion(
    stages: Stages,
) -> None:
    from mocks.llamaparse_server import create_app as llamaparse_app
    from mocks.serve import running_server

    async with running_server(llamaparse_app(delay_s=0.3)) as url:
        stages.settings.parser_backend = "llamaparse"
        stages.settings.llamaparse_base_url = url
        await stages.start()
        event = await stages.submit((CORPUS / "pdflatex-4-pages.pdf").read_bytes())
        job = await stages.finished(event.job_id)
    assert (job["status"], job["state"]) == ("complete", "done"), job["last_error"]
    assert job["pages"] == 4
    parser = await stages.pool.fetchval(
        "SELECT detail->>'parsed_path' FROM events WHERE job_id = $1 AND status = 'parsed'",
        event.job_id,
    )
    assert parser and parser.endswith(".md")


async def test_redriving_a_copy_without_its_value_sends_the_original_bytes(
    stages: Stages,
) -> None:
    """A DLQ copy too big to keep its value points at the original record: redrive reads the
    bytes back from there, and says so when retention has removed them."""
    s = stages.settings
    original = uploaded_event()
    uploaded, dlq = f"{s.topic_prefix}uploaded", f"{s.topic_prefix}uploaded.dlq"
    await produce_events(s, uploaded, [original])
    (kept,) = [r async for r in scan(s, uploaded)]
    pointer = {
        Headers.ORIGINAL_TOPIC: uploaded,
        Headers.ORIGINAL_PARTITION: str(kept.partition),
        Headers.VALUE_OMITTED: str(len(kept.value or b"")),
    }
    await produce(
        s,
        dlq,
        [b"", b""],
        keys=[original.key(), b"gone"],
        headers=[
            pointer | {Headers.ORIGINAL_OFFSET: str(kept.offset)},
            pointer | {Headers.ORIGINAL_OFFSET: str(kept.offset + 1000)},
        ],
    )

    copies = [r async for r in scan(s, dlq)]
    results = await ops.redrive(s, stages.pool, copies)
    by_key = {c.key: r.status for c, r in zip(copies, results, strict=True)}
    assert by_key == {original.key(): "redriven", b"gone": "value_unavailable"}
    sent = [r async for r in scan(s, uploaded) if Headers.REDRIVEN in r.headers]
    assert [r.value for r in sent] == [kept.value]
    assert Headers.VALUE_OMITTED not in sent[0].headers
