"""The secured, replicated broker (SASL_SSL, SCRAM per process, ACLs, RF 3): every principal
connects, a wrong password or an untrusted CA reads as one line, a stage whose principal
may not read its input stays up and not ready and processes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAuthorizationFailedError
from pydantic import SecretStr

from accessa import kafka_clients
from accessa.config import Settings
from accessa.devstack import acls
from accessa.devstack.kafka import PROCESSES, LocalKafka
from accessa.devstack.tls import create_ca
from accessa.health import broker_check
from accessa.ops.localrun import LocalPipeline
from accessa.topics import ensure_topics
from tests.utils import produce, wait_for

pytestmark = pytest.mark.integration


def as_user(settings: Settings, user: str, password: str, **update: object) -> Settings:
    return settings.model_copy(
        update={"kafka_sasl_username": user, "kafka_sasl_password": SecretStr(password), **update}
    )


@pytest.mark.parametrize("process", PROCESSES)
async def test_each_process_connects_as_its_own_principal(
    secure_cluster: Settings, process: str
) -> None:
    assert await broker_check(secure_cluster, process=process) is None
    assert kafka_clients.pinned(secure_cluster, process).kafka_sasl_username == (
        f"accessa-{process}"
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_every_sasl_mechanism_authenticates(secure_cluster: Settings, mechanism: str) -> None:
    password = LocalKafka(secure_cluster).passwords()["accessa-parser"]
    settings = as_user(secure_cluster, "accessa-parser", password, kafka_sasl_mechanism=mechanism)
    assert await broker_check(settings) is None


async def test_a_wrong_password_is_refused_with_a_clear_reason(secure_cluster: Settings) -> None:
    settings = as_user(secure_cluster, "accessa-parser", "not-the-password")
    problem = await broker_check(settings)
    assert problem is not None
    assert problem.startswith("Kafka SASL authentication failed (wrong username or password)")


async def test_a_client_that_trusts_another_ca_is_refused(
    secure_cluster: Settings, tmp_path: Path
) -> None:
    other = create_ca(tmp_path, "Some other CA")
    settings = secure_cluster.model_copy(update={"kafka_ssl_cafile": other.cert})
    problem = await broker_check(settings)
    assert problem is not None and problem.startswith(
        "TLS: the broker's certificate is not trusted"
    )


async def test_plaintext_clients_cannot_talk_to_the_secured_listener(
    secure_cluster: Settings,
) -> None:
    plain = secure_cluster.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    assert await broker_check(plain, timeout_s=3) is not None


async def test_topics_are_replicated_three_times_with_min_isr_two(
    secure_cluster: Settings, topic_prefix: str
) -> None:
    settings = secure_cluster.model_copy(update={"topic_prefix": topic_prefix})
    counts = await ensure_topics(settings)
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(sorted(counts))
        replicas = {len(p["replicas"]) for t in described for p in t["partitions"]}
        isr = {len(p["isr"]) for t in described for p in t["partitions"]}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, f"{topic_prefix}uploaded")]
        )
        entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
        await admin.delete_topics(sorted(counts))
    finally:
        await admin.close()
    assert replicas == {3} and isr == {3}
    assert entries["min.insync.replicas"] == "2"


async def test_a_principal_reading_another_stages_topic_is_denied(
    secure_cluster: Settings, topic_prefix: str
) -> None:
    settings = secure_cluster.model_copy(update={"topic_prefix": topic_prefix})
    await ensure_topics(settings)
    await acls.grant(settings, acls.pipeline_acls(settings))
    parser = kafka_clients.pinned(settings, "parser")
    consumer = kafka_clients.consumer(
        parser, f"{topic_prefix}parsed", group_id=f"{topic_prefix}accessa-parser"
    )
    await consumer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


def _reason(url: str, expected: str) -> Callable[[], Awaitable[dict | None]]:
    """A poll of the process's /ready until its Kafka reason mentions `expected`."""

    async def poll() -> dict | None:
        async with httpx.AsyncClient(timeout=3) as client:
            try:
                body = (await client.get(url)).json()
            except httpx.HTTPError:
                return None
        return body if expected in body.get("reasons", {}).get("kafka", "") else None

    return poll


def test_a_stage_with_a_wrong_password_stays_up_and_not_ready_with_the_reason(
    secure_cluster: Settings, tmp_path: Path
) -> None:
    pipeline = LocalPipeline.create(secure_cluster, tmp_path)
    proc = pipeline.start("chunker", ACCESSA_KAFKA_SASL_PASSWORD="wrong-password")
    try:
        body = asyncio.run(
            wait_for(_reason(pipeline.health["chunker"], "SASL authentication failed"), timeout=60)
        )
        assert body["ready"] is False and body["checks"]["kafka"] is False
        assert "SASL authentication failed" in body["reasons"]["kafka"]
        assert proc.poll() is None  # up, not crash-looping
    finally:
        pipeline.stop_all()
    log = (tmp_path / "chunker.log").read_text()
    tries = log.count("cannot consume yet")
    assert 1 <= tries <= 8  # one line per backoff step, not a flood
    assert "Traceback" not in log


def test_a_stage_running_as_another_stages_principal_processes_nothing(
    secure_cluster: Settings, tmp_path: Path
) -> None:
    pipeline = LocalPipeline.create(secure_cluster, tmp_path)
    settings = pipeline.settings
    asyncio.run(produce(settings, f"{settings.topic_prefix}parsed", [b'{"waiting": true}']))
    parser = pipeline.kafka_env["parser"]
    pipeline.start(
        "chunker",
        ACCESSA_KAFKA_SASL_USERNAME=parser["ACCESSA_KAFKA_SASL_USERNAME"],
        ACCESSA_KAFKA_SASL_PASSWORD=parser["ACCESSA_KAFKA_SASL_PASSWORD"],
    )
    try:
        body = asyncio.run(
            wait_for(_reason(pipeline.health["chunker"], "denied topic"), timeout=60)
        )
    finally:
        pipeline.stop_all()
    reason = body["reasons"]["kafka"]
    assert f"denied topic {settings.topic_prefix}parsed" in reason
    assert "TopicAuthorizationFailed" in reason
    committed = asyncio.run(_committed(settings, f"{settings.topic_prefix}accessa-chunker"))
    assert committed == {}


async def _committed(settings: Settings, group: str) -> dict:
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        return await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()


@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "list"],
        ["replay", "--topic", "uploaded", "--from", "2026-01-01T00:00:00", "--dry-run"],
        ["consumers", "reset", "--group", "parser", "--to-earliest", "--dry-run"],
        ["infra", "topics"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
@pytest.mark.parametrize("fault", ["wrong password", "foreign CA"])
def test_cli_commands_exit_3_with_one_line_when_kafka_refuses_them(
    secure_cluster: Settings, tmp_path: Path, command: list[str], fault: str
) -> None:
    env = {**os.environ, **kafka_clients.child_env(secure_cluster, "ops")}
    if fault == "wrong password":
        env["ACCESSA_KAFKA_SASL_PASSWORD"] = "wrong-password"
        expected = "Kafka SASL authentication failed (wrong username or password)"
    else:
        env["ACCESSA_KAFKA_SSL_CAFILE"] = str(create_ca(tmp_path, "Some other CA").cert)
        expected = "TLS: the broker's certificate is not trusted"
    result = subprocess.run(
        [sys.executable, "-m", "accessa.cli.main", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_api_with_a_wrong_kafka_password_is_not_ready_and_says_why(
    secure_cluster: Settings, tmp_path: Path
) -> None:
    pipeline = LocalPipeline.create(secure_cluster, tmp_path)
    proc = pipeline.start("api", ACCESSA_KAFKA_SASL_PASSWORD="wrong-password")
    try:
        body = asyncio.run(
            wait_for(_reason(pipeline.health["api"], "SASL authentication failed"), timeout=60)
        )
        assert body["ready"] is False and body["checks"] == {"postgres": True, "kafka": False}
        assert proc.poll() is None
    finally:
        pipeline.stop_all()
    log = (tmp_path / "api.log").read_text()
    assert "Traceback" not in log
