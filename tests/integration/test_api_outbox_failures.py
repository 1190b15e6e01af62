# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""An outbox row the broker can never take is failed on its own, with a reason an operator sees
(`accessa status`, `accessa dlq list`) and a failed job, while the rows behind it go out."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from accessa import kafka_clients
from accessa import operations as ops
from accessa.cli.main import app as cli
from accessa.config import Settings, get_settings
from accessa.status import database_status
from producer_api.main import create_app
from producer_api.outbox import relay_once
from producer_api.outbox_publisher import KafkaPublisher
from tests.integration.test_api_support import (  # noqa: F401
    api_settings,
    bearer,
    running,
    unique_pdf,
    upload,
    uploaded_records,
)
from tests.utils import wait_for

pytestmark = pytest.mark.integration


async def _gone(admin: AIOKafkaAdminClient, topic: str) -> bool:
    return topic not in await admin.list_topics()


async def test_a_row_for_a_missing_topic_or_too_large_fails_alone_and_the_rest_go_out(
    api_settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = api_settings.topic_prefix
    auth = bearer(api_settings, uuid.uuid4())
    async with running(create_app(api_settings, with_relay=False)) as api:
        jobs = [(await upload(api, auth, unique_pdf())).json() for _ in range(3)]
    missing, too_large, fine = jobs
    find = "SELECT id FROM outbox WHERE headers->>'x-job-id' = $1"
    rows = {j["job_id"]: await pool.fetchval(find, j["job_id"]) for j in jobs}
    # Ahead of the healthy row: one for a topic that is gone, one larger than any request.
    await pool.execute(
        "UPDATE outbox SET topic = $2 WHERE id = $1", rows[missing["job_id"]], f"{prefix}parsed"
    )
    await pool.execute(
        "UPDATE outbox SET payload = $2 WHERE id = $1",
        rows[too_large["job_id"]],
        b"x" * (2 * 1024 * 1024),
    )
    admin = kafka_clients.admin(api_settings)
    await admin.start()
    try:
        await admin.delete_topics([f"{prefix}parsed"])
        # The controller answers before every broker has dropped the topic; until then a send
        # to it may still be accepted.
        await wait_for(lambda: _gone(admin, f"{prefix}parsed"), what="the topic's deletion")
    finally:
        await admin.close()

    publisher = KafkaPublisher(api_settings, request_timeout_ms=3000)
    try:
        assert await relay_once(api_settings, pool, publisher) == 3
        assert await relay_once(api_settings, pool, publisher) == 0  # never claimed again
    finally:
        await publisher.close()

    (record,) = await uploaded_records(api_settings, expect=1)
    assert record.key.decode() == fine["document_id"]
    state = {
        r["id"]: r
        for r in await pool.fetch(
            "SELECT id, published_at, failed_at, failure FROM outbox WHERE id = ANY($1::bigint[])",
            list(rows.values()),
        )
    }
    assert state[rows[fine["job_id"]]]["published_at"] is not None
    gone = state[rows[missing["job_id"]]]
    assert gone["failed_at"] and gone["failure"] == f"topic {prefix}parsed does not exist"
    big = state[rows[too_large["job_id"]]]
    assert big["failed_at"] and "MessageSizeTooLarge" in big["failure"]

    # The jobs fail where their event was headed, with the reason.
    for job, status in ((missing, "failed_chunking"), (too_large, "failed_parse")):
        row = await pool.fetchrow(
            "SELECT status, state, last_error FROM upload_jobs WHERE job_id = $1",
            uuid.UUID(job["job_id"]),
        )
        assert (row["status"], row["state"]) == (status, "deadletter")
        assert row["last_error"]["code"] == "outbox_undeliverable"

    # What an operator sees.
    assert (await database_status(pool))["outbox_failed"] >= 2
    listed = await ops.outbox_failures(pool, api_settings)
    assert {r["id"] for r in listed} == {
        f"outbox:{rows[missing['job_id']]}",
        f"outbox:{rows[too_large['job_id']]}",
    }
    monkeypatch.setenv("ACCESSA_TOPIC_PREFIX", prefix)
    gone_id = f"outbox:{rows[missing['job_id']]}"
    get_settings.cache_clear()
    try:
        listing = await asyncio.to_thread(CliRunner().invoke, cli, ["dlq", "list", "--json"])
        shown = await asyncio.to_thread(CliRunner().invoke, cli, ["dlq", "show", gone_id, "--json"])
    finally:
        get_settings.cache_clear()
    assert listing.exit_code == 0, listing.output
    codes = {r["id"]: r["error_code"] for r in json.loads(listing.output)}
    assert codes[gone_id] == "outbox_undeliverable"
    assert json.loads(shown.output)["error_message"] == f"topic {prefix}parsed does not exist"
