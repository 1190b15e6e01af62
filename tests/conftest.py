"""Test infrastructure: a real Kafka broker and a real Postgres for integration and e2e tests.

Tests use their own state folder and ports (`.accessa-test/`, Kafka 29092, Postgres 54339) so
they can run beside `make run`. The session starts what is not running and stops only that.
With ACCESSA_TEST_INFRA=containers and a reachable Docker engine, testcontainers is used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_ENV = {
    "ACCESSA_ENV": "test",
    "ACCESSA_HOME": str(ROOT / ".accessa-test"),
    "ACCESSA_KAFKA_PORT": "29092",
    "ACCESSA_KAFKA_CONTROLLER_PORT": "29093",
    "ACCESSA_POSTGRES_PORT": "54339",
    "ACCESSA_KAFKA_HEAP": "1536m",
    "ACCESSA_TOPIC_PARTITIONS": "2",  # each test makes its own topics: keep the broker light
    "ACCESSA_LOG_JSON": "true",
}
for _key, _value in TEST_ENV.items():
    os.environ.setdefault(_key, _value)

from accessa import kafka_clients  # noqa: E402
from accessa.config import Settings, get_settings  # noqa: E402


def _containers() -> Iterator[dict[str, str]]:
    """Kafka and pgvector in containers (only where a Docker engine is reachable)."""
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        PostgresContainer("pgvector/pgvector:pg17", driver=None) as pg,
    ):
        yield {
            "ACCESSA_KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "ACCESSA_DATABASE_URL": pg.get_connection_url(),
        }


@pytest.fixture(scope="session")
def infra() -> Iterator[Settings]:
    """Kafka + Postgres up, topics created, migrations applied; stops what it started."""
    if os.environ.get("ACCESSA_TEST_INFRA") == "containers":
        gen = _containers()
        os.environ.update(next(gen))
    get_settings.cache_clear()
    settings = get_settings()
    from accessa.devstack.kafka import LocalKafka
    from accessa.devstack.postgres import LocalPostgres

    started: list[LocalKafka | LocalPostgres] = []
    if settings.embedded_postgres:
        pg = LocalPostgres(settings)
        if pg.up():
            started.append(pg)
    if settings.embedded_kafka:
        kafka = LocalKafka(settings)
        if kafka.up():
            started.append(kafka)
    import asyncio

    from accessa.migrate import migrate
    from accessa.topics import ensure_topics

    try:
        asyncio.run(migrate(settings))
        asyncio.run(ensure_topics(settings))
        yield settings
    finally:
        # Also when set-up fails: a broker left running would be the next session's, on its
        # ports, and its `down()` could not stop it.
        if os.environ.get("ACCESSA_TEST_KEEP_INFRA") != "1":
            for component in reversed(started):
                component.down()


@pytest.fixture(scope="session")
def secure_cluster(infra: Settings) -> Iterator[Settings]:
    """A second, production-shaped Kafka beside the plain one: 3 KRaft nodes, SASL_SSL with a
    local CA, SCRAM users per process, ACLs (StandardAuthorizer), topics at RF 3 / min ISR 2.
    Settings returned connect as the `ops` principal; Postgres is the shared one."""
    from accessa.devstack.kafka import LocalKafka

    settings = infra.model_copy(
        update={
            "home": infra.home / "secure",
            "kafka_bootstrap_servers": None,
            "kafka_port": infra.kafka_port + 100,  # beside the plain broker's ports
            "kafka_controller_port": infra.kafka_controller_port + 100,
            "kafka_brokers": 3,
            "kafka_secure": True,
            "kafka_heap": "384m",
            "postgres_credentials": infra.postgres_credentials_file,  # the shared Postgres's
        }
    )
    kafka = LocalKafka(settings)
    started = kafka.up()
    yield settings
    if started and os.environ.get("ACCESSA_TEST_KEEP_INFRA") != "1":
        kafka.down()


@pytest.fixture
def exporter() -> Iterator[Any]:
    """Spans of this process, kept in memory (an InMemorySpanExporter) while the test runs."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from accessa import tracing

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use_provider(provider)
    yield spans
    tracing.use_provider(None)


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace for one test (as FastStream's own suite does)."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def isolated_settings(infra: Settings, topic_prefix: str) -> Iterator[Settings]:
    """Settings on the shared infra but with this test's own topics and consumer groups
    (deleted afterwards)."""
    yield infra.model_copy(update={"topic_prefix": topic_prefix})
    import asyncio

    asyncio.run(delete_topics(infra, topic_prefix))


async def delete_topics(settings: Settings, prefix: str) -> None:

    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
async def pool(infra: Settings) -> AsyncIterator[asyncpg.Pool]:
    from accessa.db import create_pool

    p = await create_pool(infra, min_size=1, max_size=10)
    yield p
    await p.close()


# --- bench/reliability.json: `make reliability` sets ACCESSA_RELIABILITY_REPORT ---------------
_POISON: dict[str, int] = {"tried": 0, "passed": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the poison catalogue's kinds as they run (call phase only)."""
    if report.when == "call" and "test_poison_catalogue" in report.nodeid:
        _POISON["tried"] += 1
        _POISON["passed"] += report.passed


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("ACCESSA_RELIABILITY_REPORT")
    if target:
        from tests.e2e.ledger import REPORT

        REPORT.write(_POISON, Path(target))
