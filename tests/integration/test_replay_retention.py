"""Pipeline topics state their retention, and `accessa replay` refuses a window that reaches
before what retention has left (on the real broker)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from accessa import kafka_clients
from accessa import operations as ops
from accessa.cli.main import app
from accessa.config import Settings, get_settings
from accessa.topics import ensure_topics

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000


async def _retention_ms(settings: Settings, names: list[str]) -> dict[str, int]:
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()
    out = {}
    for response in described:
        for _error, _message, _type, name, entries in response.resources:
            out[name] = int({e[0]: e[1] for e in entries}["retention.ms"])
    return out


async def _three_records_the_oldest_deleted(settings: Settings, topic: str) -> list[int]:
    """Records 3, 2 and 1 hours old on partition 0; then the oldest is deleted, as retention
    would. Returns their timestamps (ms)."""
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 3 * HOUR_MS, now_ms - 2 * HOUR_MS, now_ms - HOUR_MS]
    producer = kafka_clients.producer(settings, acks="all")
    await producer.start()
    try:
        for n, stamp in enumerate(stamps):
            await producer.send_and_wait(topic, b'{"n": %d}' % n, partition=0, timestamp_ms=stamp)
    finally:
        await producer.stop()
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(1)})
    finally:
        await admin.close()
    return stamps


def test_topics_are_created_with_their_retention(isolated_settings: Settings) -> None:
    settings = isolated_settings.model_copy(update={"topic_retention_hours": 36.0})
    names = sorted(asyncio.run(ensure_topics(settings)))
    retention = asyncio.run(_retention_ms(settings, names))
    assert set(retention) == set(names)
    for name in names:
        assert retention[name] == (30 * 24 if name.endswith(".dlq") else 36) * HOUR_MS, name


def test_replay_refuses_a_window_older_than_the_earliest_record_and_accepts_one_inside(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = isolated_settings
    asyncio.run(ensure_topics(settings))
    topic = f"{settings.topic_prefix}uploaded"
    stamps = asyncio.run(_three_records_the_oldest_deleted(settings, topic))

    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    too_old = at(stamps[1]) - timedelta(minutes=30)  # after the deleted one, before the first kept
    with pytest.raises(ops.WindowExpired, match="no longer holds records before"):
        asyncio.run(ops.replay(settings, "uploaded", since=too_old, dry_run=True))
    inside = asyncio.run(
        ops.replay(settings, "uploaded", since=at(stamps[1]) + timedelta(minutes=30), dry_run=True)
    )
    assert [r.timestamp_ms for r in inside] == [stamps[2]]

    monkeypatch.setenv("ACCESSA_TOPIC_PREFIX", settings.topic_prefix)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        since = too_old.replace(tzinfo=None).isoformat(timespec="seconds")  # the CLI's local time
        refused = runner.invoke(app, ["replay", "--topic", "uploaded", "--from", since, "--json"])
        assert refused.exit_code == 1, refused.output
        assert "no longer holds records before" in json.loads(refused.output)["error"]
        assert refused.exception is None or isinstance(refused.exception, SystemExit)
        since = (at(stamps[1]) + timedelta(minutes=30)).replace(tzinfo=None).isoformat()
        accepted = runner.invoke(
            app, ["replay", "--topic", "uploaded", "--from", since[:19], "--dry-run", "--json"]
        )
        assert accepted.exit_code == 0, accepted.output
        assert len(json.loads(accepted.output)["events"]) == 1
    finally:
        get_settings.cache_clear()
