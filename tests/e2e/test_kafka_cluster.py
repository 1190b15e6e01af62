"""The whole pipeline on a production-shaped Kafka: 3 KRaft nodes, SASL_SSL, one SCRAM
principal per process with least-privilege ACLs, topics at RF 3 / min ISR 2, producers on
acks=all + idempotence. It completes every document, and survives losing the leader, a
rolling restart and the loss of two of three nodes, with nothing lost, duplicated or paid
twice (audited by `tests/e2e/ledger.py`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from accessa import kafka_clients
from accessa.config import Settings
from accessa.devstack.kafka import KafkaNode, LocalKafka, replication_state
from accessa.ops.localrun import LocalPipeline
from tests.e2e.ledger import Batch, assert_ingested
from tests.utils import read_topic, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOCS = int(os.environ.get("ACCESSA_RELIABILITY_FAILOVER_DOCS", "16"))  # 50: make reliability
OUTAGE_S = 20.0


@pytest.fixture
def cluster(secure_cluster: Settings) -> Iterator[LocalKafka]:
    """The nodes, all running again after the test, whatever it stopped."""
    kafka = LocalKafka(secure_cluster)
    yield kafka
    for node in kafka.nodes:
        if node.pid() is None:
            kafka.start_node(node)


async def wait_fully_replicated(settings: Settings, timeout: float = 120) -> None:
    async def healthy() -> bool:
        state = await replication_state(settings)
        return state["under_replicated"] == 0 and state["offline"] == 0

    await wait_for(healthy, timeout=timeout, interval=0.5, what="no under-replicated partitions")


async def leader_counts(settings: Settings) -> Counter[int]:
    """Node id -> partitions of this pipeline's topics it leads."""
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return Counter(p["leader"] for t in described for p in t["partitions"])


def retried_or_dead(pipeline: LocalPipeline) -> int:
    """Records this pipeline put on its retry and dead-letter topics."""
    names = [t for t in pipeline_topics(pipeline) if ".retry." in t or t.endswith(".dlq")]
    return sum(len(asyncio.run(read_topic(pipeline.settings, t))) for t in names)


def pipeline_topics(pipeline: LocalPipeline) -> list[str]:
    from accessa.topics import topics_for

    return topics_for(pipeline.settings).all()


def test_the_pipeline_runs_end_to_end_over_sasl_ssl_with_per_stage_principals(
    secure_pipeline: LocalPipeline,
) -> None:
    users = {p: env["ACCESSA_KAFKA_SASL_USERNAME"] for p, env in secure_pipeline.kafka_env.items()}
    # Each process its own principal; the operator's console is the operator (ops).
    assert users == {
        p: f"accessa-{p}" for p in ("api", "parser", "chunker", "embedder", "finalizer")
    } | {"console": "accessa-ops"}
    batch = Batch.make(secure_pipeline, 6)

    async def run() -> None:
        await batch.upload()
        await batch.wait_finished(timeout=240)

    asyncio.run(run())
    assert_ingested(batch, "sasl_ssl_end_to_end")


@pytest.mark.reliability
def test_killing_the_broker_that_leads_most_partitions_loses_nothing(
    secure_pipeline: LocalPipeline, cluster: LocalKafka
) -> None:
    batch = Batch.make(secure_pipeline, DOCS)
    settings = secure_pipeline.settings

    async def run() -> dict[str, object]:
        await batch.upload()
        await batch.wait_complete(1)
        leaders = await leader_counts(settings)
        victim = next(n for n in cluster.nodes if n.node_id == leaders.most_common(1)[0][0])
        await asyncio.to_thread(victim.kill)
        done_without = await batch.wait_complete(min(DOCS, 2 + DOCS // 2), timeout=240)
        await asyncio.to_thread(cluster.start_node, victim)
        await batch.wait_finished(timeout=300)
        await wait_fully_replicated(settings)
        return {
            "killed_node": victim.node_id,
            "led_partitions": leaders[victim.node_id],
            "complete_while_down": done_without,
        }

    figures = asyncio.run(run())
    assert_ingested(batch, "leader_broker_sigkill", **figures)


@pytest.mark.reliability
def test_a_rolling_restart_of_all_three_brokers_mid_run_loses_nothing(
    secure_pipeline: LocalPipeline, cluster: LocalKafka
) -> None:
    batch = Batch.make(secure_pipeline, DOCS)
    settings = secure_pipeline.settings
    parts = [batch.pdfs[i :: len(cluster.nodes)] for i in range(len(cluster.nodes))]

    async def restart(node: KafkaNode) -> None:
        await asyncio.to_thread(cluster.stop_node, node)
        await asyncio.to_thread(cluster.start_node, node)
        await wait_fully_replicated(settings)  # as an operator would before the next node

    async def run() -> float:
        started = time.monotonic()
        for node, part in zip(cluster.nodes, parts, strict=True):
            await batch.upload(part)
            await restart(node)
        await batch.wait_finished(timeout=300)
        return time.monotonic() - started

    elapsed = asyncio.run(run())
    assert_ingested(batch, "rolling_restart_3_brokers", seconds=round(elapsed, 1))


@pytest.mark.reliability
def test_two_of_three_brokers_down_for_20s_uploads_accepted_and_no_attempt_spent(
    secure_pipeline: LocalPipeline, cluster: LocalKafka
) -> None:
    batch = Batch.make(secure_pipeline, DOCS)
    half = DOCS // 2
    down = cluster.nodes[1:]

    retried_before = retried_or_dead(secure_pipeline)

    async def run() -> int:
        await batch.upload(batch.pdfs[:half])
        await batch.wait_complete(1)
        for node in down:
            await asyncio.to_thread(node.kill)
        try:  # the outbox holds what the broker cannot take
            accepted = await batch.upload_over(batch.pdfs[half:], OUTAGE_S)
        finally:
            for node in down:
                await asyncio.to_thread(cluster.start_node, node)
        await batch.wait_finished(timeout=300)
        return accepted

    accepted = asyncio.run(run())
    assert accepted == DOCS - half
    assert retried_or_dead(secure_pipeline) == retried_before  # waiting spent no attempt
    assert_ingested(batch, "two_of_three_brokers_down_20s", uploads_accepted_while_down=accepted)


def test_status_reports_every_node_and_no_under_replicated_partitions(
    secure_cluster: Settings,
) -> None:
    status = LocalKafka(secure_cluster).status()
    assert status.healthy
    assert "node 1 up" in status.detail and "node 3 up" in status.detail
    assert " 0 of " in status.detail and "under-replicated, 0 offline" in status.detail
