"""Tracing across the real processes: every one exports over OTLP/HTTP (the real exporter) to
a receiver in this test, and one upload is one trace from the API request to `completed`."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator

import pytest

from accessa.config import Settings
from accessa.ops.localrun import LocalPipeline
from mocks.policy_pdf import make_policy_pdf
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, render
from tests.utils import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SERVER, PRODUCER, CONSUMER = 2, 4, 5
STAGES = ("parser", "chunker", "embedder", "finalizer")


@pytest.fixture(scope="module")
def traced(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    with OtlpReceiver() as receiver:
        pipe = LocalPipeline.create(
            infra,
            tmp_path_factory.mktemp("traced"),
            ACCESSA_OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s, not the default 5 s
        )
        try:
            pipe.start_all()
            yield pipe, receiver
        finally:
            pipe.stop_all()


def test_an_upload_is_one_trace_from_the_request_to_completed(traced: tuple) -> None:
    pipe, receiver = traced
    user = uuid.uuid4()

    async def run() -> dict:
        async with pipe.client(user) as client:
            pdf = make_policy_pdf(seed=4242, pages=2)
            upload = {"file": ("traced.pdf", pdf, "application/pdf")}
            r = await client.post("/api/v2/documents", files=upload)
            assert r.status_code == 202, r.text
            job_id = r.json()["job_id"]

            async def done() -> dict | None:
                job = (await client.get(f"/api/v2/jobs/{job_id}")).json()
                return job if job["status"] == "complete" else None

            return await wait_for(done, timeout=180, interval=0.3, what="the job")

    job = asyncio.run(run())
    trace_id = job["trace_id"]
    assert trace_id and len(trace_id) == 32
    completed = f"send {pipe.settings.topic_prefix}completed"

    async def exported() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace_id)
        return spans if any(s.name == completed for s in spans) else None

    spans = asyncio.run(wait_for(exported, timeout=30, what="the finalizer's send span"))
    print("\n" + render(spans))
    by_id = {s.span_id: s for s in spans}
    [request] = [s for s in spans if s.kind == SERVER and s.name.startswith("POST")]
    assert request.parent_id == "" and request.service == "accessa-api"
    # The messaging hops form one chain: request -> send uploaded -> process uploaded -> send
    # parsed -> ... -> send completed, across the API (relay) and the four stage processes.
    hops = sorted((s for s in spans if s.kind in (PRODUCER, CONSUMER)), key=lambda s: s.start_ns)
    prefix = pipe.settings.topic_prefix
    assert [s.name.replace(prefix, "") for s in hops] == [
        "send uploaded",
        "process uploaded",
        "send parsed",
        "process parsed",
        "send chunked",
        "process chunked",
        "send embedded",
        "process embedded",
        "send completed",
    ]
    assert by_id[hops[0].parent_id] is request
    for parent, child in itertools.pairwise(hops):
        assert child.parent_id == parent.span_id, (child.name, parent.name)
    processes = [s for s in hops if s.kind == CONSUMER]
    assert [s.service for s in processes] == [f"accessa-{n}" for n in STAGES]
    for span, stage in zip(processes, STAGES, strict=True):
        assert span.attributes["accessa.stage"] == stage
        assert span.attributes["accessa.job_id"] == job["job_id"]
        assert span.attributes["accessa.document_id"] == job["document_id"]
        assert span.attributes["messaging.system"] == "kafka"
        assert span.attributes["messaging.destination.name"].startswith(prefix)
        assert 0 <= span.attributes["messaging.kafka.wait_ms"] < 30_000
    # Database queries made while handling a record are its children (asyncpg instrumented).
    assert any(by_id.get(s.parent_id) in processes for s in spans if s.kind == 3)
    assert receiver.requests > 0
