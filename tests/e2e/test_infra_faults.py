"""Infrastructure faults during a run: the broker stopped, Postgres restarted, the providers
failing 30 % of their calls, a consumer group rebalancing. Nothing may be lost or duplicated,
and no chunk text may be paid for twice (audited by `tests/e2e/ledger.py`)."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from datetime import datetime

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from accessa.config import Settings
from accessa.db import create_pool
from accessa.devstack.kafka import LocalKafka
from accessa.devstack.postgres import LocalPostgres
from accessa.ops.localrun import LocalPipeline
from mocks.llamaparse_server import render_markdown
from tests.e2e.ledger import Batch, assert_ingested

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.reliability]

DOCS = int(os.environ.get("ACCESSA_RELIABILITY_FAULT_DOCS", "20"))  # 50: make reliability
OUTAGE_S = 20.0
BACKOFF_BASE_S = 3.0


def test_a_broker_outage_mid_run_loses_nothing_and_the_api_keeps_accepting(
    pipeline: LocalPipeline, infra: Settings
) -> None:
    batch = Batch.make(pipeline, DOCS)
    half = DOCS // 2
    kafka = LocalKafka(infra)

    async def run() -> int:
        await batch.upload(batch.pdfs[:half])
        await batch.wait_complete(1)
        await asyncio.to_thread(kafka.down)
        try:  # the API takes uploads through the whole outage
            accepted_while_down = await batch.upload_over(batch.pdfs[half:], OUTAGE_S)
        finally:
            await asyncio.to_thread(kafka.up)
        await batch.wait_finished(timeout=300)
        return accepted_while_down

    accepted = asyncio.run(run())
    assert accepted == DOCS - half
    assert_ingested(batch, "broker_stopped_20s", uploads_accepted_while_down=accepted)


def test_a_postgres_restart_mid_run_loses_nothing(pipeline: LocalPipeline, infra: Settings) -> None:
    batch = Batch.make(pipeline, DOCS)
    postgres = LocalPostgres(infra)

    first, rest = batch.pdfs[:3], batch.pdfs[3:]
    slow = f"{pipeline.openai_url}/_mock/config"

    async def run() -> int:
        await batch.upload(first)
        await batch.wait_complete(len(first))
        # Mid-run by construction: the rest cannot complete before the restart, as each of
        # their embedding calls now takes 1.5 s (a fast pipeline finished all 20 before).
        async with httpx.AsyncClient() as mocks:
            (await mocks.post(slow, json={"latency_ms": 1500})).raise_for_status()
            try:
                await batch.upload(rest)
                before = sum(s == "complete" for s in (await batch.statuses()).values())
                await asyncio.to_thread(postgres.down)
                await asyncio.to_thread(postgres.up)
            finally:
                (await mocks.post(slow, json={"latency_ms": 0})).raise_for_status()
        await batch.wait_finished(timeout=300)
        return before

    complete_before = asyncio.run(run())
    assert complete_before < DOCS, "the restart must happen mid-run"
    assert_ingested(batch, "postgres_restarted", complete_before_restart=complete_before)


def test_providers_failing_30_percent_of_calls_complete_via_backed_off_retries(
    pipeline: LocalPipeline,
) -> None:
    """LlamaParse and OpenAI (both mocks) fail 30 % of calls with 429/500/503; the first
    embedding call fails three times in a row so at least one document takes the retry
    topics. Backoff is measured from the audit trail, and documents behind a retried one on
    the same partition go on meanwhile."""
    llama = pipeline.env["ACCESSA_LLAMAPARSE_BASE_URL"]
    env = {"ACCESSA_RETRY_BASE_DELAY_S": str(BACKOFF_BASE_S)}
    restart(pipeline, "parser", ACCESSA_PARSER_BACKEND="llamaparse", **env)
    restart(pipeline, "embedder", **env)
    batch = Batch.make(pipeline, max(20, DOCS // 2), parse=lambda pdf: render_markdown(pdf)[0])

    async def run() -> None:
        async with httpx.AsyncClient() as mocks:
            for url in (llama, pipeline.openai_url):
                faulty = {"failure_rate": 0.3, "seed": 7}
                (await mocks.post(f"{url}/_mock/config", json=faulty)).raise_for_status()
            first_call_fails = {"fail_next": [503, 503, 503]}  # the SDK's 3 tries of one call
            await mocks.post(f"{pipeline.openai_url}/_mock/config", json=first_call_fails)
            try:
                await batch.upload()
                await batch.wait_finished(timeout=300)
            finally:
                for url in (llama, pipeline.openai_url):
                    await mocks.post(f"{url}/_mock/config", json={"failure_rate": 0})

    try:
        asyncio.run(run())
    finally:
        restart(pipeline, "parser")
        restart(pipeline, "embedder")
    waits = asyncio.run(retry_waits(pipeline, batch))
    assert_ingested(batch, "providers_fail_30_percent", retries=waits)
    assert waits, "no document took a retry topic"
    for wait in waits:
        due = BACKOFF_BASE_S * 2 ** (wait["attempt"] - 1)
        assert due - 0.1 <= wait["waited_s"] <= due + 10, wait
    # A wait late in the run may have nobody behind it; the forced early one always has.
    assert max(w["same_partition_progress"] for w in waits) >= 1, f"partition blocked: {waits}"


def test_a_rebalance_mid_run_loses_and_duplicates_nothing(pipeline: LocalPipeline) -> None:
    batch = Batch.make(pipeline, DOCS)

    async def run() -> None:
        await batch.upload()
        await batch.wait_complete(3)
        await asyncio.to_thread(pipeline.start, "embedder#2")
        await asyncio.to_thread(pipeline.wait_ready, ("embedder#2",))
        await asyncio.to_thread(pipeline.start, "chunker#2")
        await asyncio.to_thread(pipeline.wait_ready, ("chunker#2",))
        await batch.wait_complete(DOCS // 2)
        await asyncio.to_thread(pipeline.stop, "embedder#2")
        await asyncio.to_thread(pipeline.stop, "chunker#2")
        await batch.wait_finished(timeout=300)

    asyncio.run(run())
    assert_ingested(batch, "rebalance_second_replica")


def restart(pipeline: LocalPipeline, name: str, **env: str) -> None:
    pipeline.stop(name)
    pipeline.start(name, **env)
    pipeline.wait_ready((name,))


STAGE_DONE = {"parser": "parsed", "embedder": "embeddings_stored"}


async def retry_waits(pipeline: LocalPipeline, batch: Batch) -> list[dict]:
    """Each retry of this batch: how long the document waited before its next attempt, and
    how many documents on the same input partition moved past the stage meanwhile."""
    partitions = pipeline.settings.topic_partitions
    choose = DefaultPartitioner()
    part = {
        u.job_id: choose(str(u.document_id).encode(), list(range(partitions)), None)
        for u in batch.uploads
    }
    pool = await create_pool(pipeline.settings, min_size=1, max_size=2)
    try:
        rows = await pool.fetch(
            "SELECT job_id, stage, kind, status, created_at FROM events "
            "WHERE job_id = ANY($1::uuid[]) ORDER BY id",
            list(part),
        )
    finally:
        await pool.close()
    trail: dict = defaultdict(list)
    passed: dict[tuple[str, int], list[datetime]] = defaultdict(list)
    for r in rows:
        trail[r["job_id"]].append(r)
        for stage, status in STAGE_DONE.items():
            if r["status"] == status:
                passed[(stage, part[r["job_id"]])].append(r["created_at"])
    waits = []
    for job_id, events in trail.items():
        attempt = {"parser": 0, "embedder": 0}
        for i, e in enumerate(events):
            if e["kind"] != "retrying" or e["stage"] not in attempt:
                continue
            attempt[e["stage"]] += 1
            after = next((x for x in events[i + 1 :] if x["stage"] == e["stage"]), None)
            if after is None:
                continue
            start, end = e["created_at"], after["created_at"]
            others = [t for t in passed[(e["stage"], part[job_id])] if start < t < end]
            waits.append(
                {
                    "stage": e["stage"],
                    "attempt": attempt[e["stage"]],
                    "waited_s": round((end - start).total_seconds(), 3),
                    "same_partition_progress": len(others),
                }
            )
    return waits
