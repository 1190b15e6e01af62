"""`accessa reprocess` on the four real stages (real broker, Postgres, mock OpenAI over HTTP):
a new version is built beside the active one, switched atomically, collected after the grace
period, and a repeated request costs nothing."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from accessa.cli.main import app
from accessa.config import Settings, get_settings
from accessa.db import user_transaction
from accessa.ops import reprocess as rp
from accessa.search import search_models
from consumers.chunker.chunking import chunk_markdown, resolve_version
from mocks.openai_server import mock_vector
from mocks.policy_pdf import make_policy_pdf
from producer_api.main import create_app
from producer_api.ratelimit import check_active_jobs
from schemas.events import DocumentUploaded
from tests.integration.conftest import Stages
from tests.integration.test_api_support import bearer, running
from tests.utils import read_topic, wait_for

pytestmark = pytest.mark.integration

V1, V2 = "markdown-simple@1", "markdown-simple@1?target=128"
SMALL, LARGE = "text-embedding-3-small", "text-embedding-3-large"


@pytest.fixture
def isolated_settings(isolated_settings: Settings) -> Settings:
    """Ingest as @1, whose embedding input is the chunk text itself (these tests compare
    vectors and cached texts by content); @2 is reprocessed like any version."""
    return isolated_settings.model_copy(update={"chunker_version": V1})


async def ingested(stages: Stages) -> DocumentUploaded:
    """A document nobody has embedded before, through all four stages."""
    await stages.start()
    event = await stages.submit(make_policy_pdf(seed=random.randrange(10**9), pages=2))
    job = await stages.finished(event.job_id)
    assert job["status"] == "complete", job["last_error"]
    return event


async def version_rows(
    pool: asyncpg.Pool, document: uuid.UUID, chunker: str, model: str
) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT chunk_id, content, content_sha256, embedding FROM document_chunks "
        "WHERE document_id = $1 AND chunker_version = $2 AND embed_model = $3 ORDER BY ordinal",
        document,
        chunker,
        model,
    )


async def active(pool: asyncpg.Pool, document: uuid.UUID) -> tuple[str, str]:
    row = await pool.fetchrow(
        "SELECT active_chunker_version, active_embed_model FROM documents WHERE document_id = $1",
        document,
    )
    return row["active_chunker_version"], row["active_embed_model"]


async def search_as(stages: Stages, user: uuid.UUID, text: str, model: str) -> list[dict]:
    """What the search endpoint returns to `user` (RLS applies) for `text` embedded by the
    mock's deterministic function (not over HTTP, so the embedding counters stay put)."""
    async with user_transaction(stages.pool, user) as conn:
        return await search_models(conn, {model: mock_vector(text, model).tolist()}, 50)


async def reprocess(stages: Stages, document: uuid.UUID, **request: Any) -> rp.Planned:
    target = rp.resolve_target(stages.settings, **request)
    planned = await rp.plan(stages.pool, target, document=document)
    await rp.start(
        stages.settings, stages.pool, target, planned, correlation_id=f"reprocess-{uuid.uuid4()}"
    )
    [item] = planned
    return item


async def job_reaches(stages: Stages, job_id: uuid.UUID, status: str) -> None:
    async def reached() -> bool:
        job = await stages.job(job_id)
        assert job["state"] != "deadletter", job["last_error"]
        return job["status"] == status

    await wait_for(reached, timeout=90, what=f"job {job_id} to reach {status}")


async def test_reprocessing_from_chunk_builds_beside_the_old_version_switches_atomically_and_gc_deletes_the_old(  # noqa: E501
    stages: Stages,
) -> None:
    event = await ingested(stages)
    doc, user, pool = event.document_id, event.user_id, stages.pool
    old = await version_rows(pool, doc, V1, SMALL)
    old_ids = {r["chunk_id"] for r in old}
    hits = await search_as(stages, user, old[0]["content"], SMALL)
    assert hits[0]["chunk_id"] == old[0]["chunk_id"]

    await stages.stop("finalizer")  # hold the switch: the new version is built, not active
    item = await reprocess(stages, doc, from_stage="chunk", chunker_version=V2)
    assert item.job_id is not None
    assert (item.action, item.chunker_version, item.embed_model) == ("queue", V2, SMALL)
    await job_reaches(stages, item.job_id, "embeddings_stored")
    buffered = await pool.fetchval(
        "SELECT count(*) FROM document_vector_buffer WHERE job_id = $1 AND embed_model = $2",
        item.job_id,
        SMALL,
    )
    assert buffered == (await stages.job(item.job_id))["chunk_count"] > len(old)
    assert await active(pool, doc) == (V1, SMALL)
    hits = await search_as(stages, user, old[0]["content"], SMALL)
    assert hits[0]["chunk_id"] == old[0]["chunk_id"]
    assert {h["chunker_version"] for h in hits if h["document_id"] == doc} == {V1}

    # Every read while the finalizer switches sees one whole version, never a mix or a gap.
    seen: set[tuple[str, int]] = set()

    async def switched() -> bool:
        row = await pool.fetchrow(
            """SELECT d.active_chunker_version AS version, count(c.chunk_id) AS chunks
               FROM documents d LEFT JOIN document_chunks c ON c.document_id = d.document_id
                 AND c.chunker_version = d.active_chunker_version
                 AND c.embed_model = d.active_embed_model
               WHERE d.document_id = $1 GROUP BY 1""",
            doc,
        )
        seen.add((row["version"], row["chunks"]))
        return row["version"] == V2

    await stages.start("finalizer")
    await wait_for(switched, timeout=60, interval=0.01, what="the switch to the new version")
    job = await stages.finished(item.job_id)
    assert (job["status"], job["kind"]) == ("complete", "reprocess")
    new = await version_rows(pool, doc, V2, SMALL)
    assert seen <= {(V1, len(old)), (V2, len(new))}
    assert len(new) == job["chunk_count"]
    trail = await pool.fetch(
        "SELECT kind, status, correlation_id FROM events WHERE job_id = $1 ORDER BY id",
        item.job_id,
    )
    assert [r["status"] for r in trail][-1] == "complete"
    assert len({r["correlation_id"] for r in trail}) == 1

    hits = await search_as(stages, user, new[1]["content"], SMALL)
    assert hits[0]["chunk_id"] == new[1]["chunk_id"]
    assert {h["chunker_version"] for h in hits if h["document_id"] == doc} == {V2}
    assert {r["chunk_id"] for r in await version_rows(pool, doc, V1, SMALL)} == old_ids

    assert await rp.gc(pool, grace_s=3600, document=doc) == []  # within the grace period
    planned_gc = await rp.gc(pool, grace_s=0, document=doc, dry_run=True)
    assert [(g["chunker_version"], g["chunks"]) for g in planned_gc] == [(V1, len(old))]
    assert len(await version_rows(pool, doc, V1, SMALL)) == len(old)
    async with pool.acquire() as conn, conn.transaction():  # a finalizer about to switch it
        await conn.execute("SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE", doc)
        assert await rp.gc(pool, grace_s=0, document=doc) == []  # skipped, not waited for
    assert await rp.gc(pool, grace_s=0, document=doc) == planned_gc
    assert await version_rows(pool, doc, V1, SMALL) == []
    assert len(await version_rows(pool, doc, V2, SMALL)) == len(new)
    hits = await search_as(stages, user, new[1]["content"], SMALL)
    assert hits[0]["chunk_id"] == new[1]["chunk_id"]


async def test_reprocessing_from_embed_re_embeds_the_active_chunks_with_the_new_model(
    stages: Stages,
) -> None:
    event = await ingested(stages)
    doc, user, pool = event.document_id, event.user_id, stages.pool
    old = await version_rows(pool, doc, V1, SMALL)
    before = (await stages.openai_stats())["embeds_by_hash"]

    await stages.stop("finalizer")
    item = await reprocess(stages, doc, from_stage="embed", embed_model=LARGE)
    assert item.job_id is not None
    assert (item.action, item.chunker_version, item.embed_model) == ("queue", V1, LARGE)
    await job_reaches(stages, item.job_id, "embeddings_stored")
    assert await active(pool, doc) == (V1, SMALL)
    assert await version_rows(pool, doc, V1, LARGE) == []  # built in the buffer only
    assert len(await version_rows(pool, doc, V1, SMALL)) == len(old)

    await stages.start("finalizer")
    job = await stages.finished(item.job_id)
    assert job["status"] == "complete", job["last_error"]
    assert await active(pool, doc) == (V1, LARGE)
    new = await version_rows(pool, doc, V1, LARGE)
    assert [r["chunk_id"] for r in new] == [r["chunk_id"] for r in old]  # same chunks
    for row in new:  # the new model's vectors, at the configured dimensions
        expected = mock_vector(row["content"], LARGE, 1536)
        assert float(expected @ row["embedding"].to_numpy()) > 0.999
    assert len(await version_rows(pool, doc, V1, SMALL)) == len(old)  # until gc

    after = (await stages.openai_stats())["embeds_by_hash"]
    paid = {h: after[h] - before.get(h, 0) for h in after if after[h] != before.get(h, 0)}
    assert paid == {r["content_sha256"]: 1 for r in old}  # each text once, with the new model

    hits = await search_as(stages, user, old[0]["content"], LARGE)
    assert (hits[0]["chunk_id"], hits[0]["embed_model"]) == (old[0]["chunk_id"], LARGE)
    small_hits = await search_as(stages, user, old[0]["content"], SMALL)
    assert doc not in {h["document_id"] for h in small_hits}  # its small vectors are inactive

    # The API embeds the query with the document's active model (over HTTP to the mock).
    async with running(create_app(stages.settings)) as api:
        response = await api.get(
            "/api/v2/search",
            params={"q": old[0]["content"], "k": 3},
            headers=bearer(stages.settings, user),
        )
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["chunk_id"] == str(old[0]["chunk_id"])


async def test_running_the_same_reprocess_again_changes_no_rows_and_costs_no_embedding_calls(
    stages: Stages,
) -> None:
    event = await ingested(stages)
    doc, pool, settings = event.document_id, stages.pool, stages.settings
    await stages.stop()  # the request waits in the topic while it is sent again

    first = await reprocess(stages, doc, from_stage="chunk", chunker_version=V2)
    assert first.job_id is not None
    second = await reprocess(stages, doc, from_stage="chunk", chunker_version=V2)
    assert (first.action, second.action) == ("queue", "resume")
    assert second.job_id == first.job_id
    sent = [
        r
        for r in await read_topic(settings, f"{settings.topic_prefix}parsed")
        if json.loads(r.value or b"")["job_id"] == str(first.job_id)
    ]
    assert len(sent) == 2
    assert len({json.loads(r.value or b"")["event_id"] for r in sent}) == 1
    async with pool.acquire() as conn:  # an operator's reprocess never blocks the user's uploads
        one_active = settings.model_copy(update={"rate_active_jobs": 1})
        await check_active_jobs(conn, settings=one_active, user_id=event.user_id)

    # What the new version will hold, and which of its texts the cache already knows.
    markdown = (await stages.storage.get((await stages.job(event.job_id))["parsed_path"])).decode()
    spec = resolve_version(
        V2, target_tokens=settings.chunk_target_tokens, overlap_tokens=settings.chunk_overlap_tokens
    )
    expected = chunk_markdown(
        markdown,
        document_id=doc,
        version=spec.version,
        target_tokens=spec.target_tokens,
        overlap_tokens=spec.overlap_tokens,
    )
    texts = {c.content_sha256 for c in expected}
    cached = {
        r["content_sha256"]
        for r in await pool.fetch(
            "SELECT content_sha256 FROM embedding_cache WHERE embed_model = $1 "
            "AND content_sha256 = ANY($2::text[])",
            SMALL,
            list(texts),
        )
    }
    assert texts - cached  # the smaller budget makes texts never embedded before
    before = (await stages.openai_stats())["embeds_by_hash"]

    await stages.start()
    job = await stages.finished(first.job_id)
    assert job["status"] == "complete", job["last_error"]
    new = await version_rows(pool, doc, V2, SMALL)
    assert [r["chunk_id"] for r in new] == [c.chunk_id for c in expected]
    after = (await stages.openai_stats())["embeds_by_hash"]
    paid = {h: after[h] - before.get(h, 0) for h in after if after[h] != before.get(h, 0)}
    assert paid == dict.fromkeys(texts - cached, 1)  # each new text once, cached ones never
    completions = await pool.fetchval(
        "SELECT count(*) FROM events WHERE job_id = $1 AND status = 'complete'", first.job_id
    )
    assert completions == 1

    async def counts() -> tuple[int, ...]:
        return tuple(
            await pool.fetchrow(
                "SELECT (SELECT count(*) FROM document_chunks WHERE document_id = $1),"
                " (SELECT count(*) FROM events WHERE document_id = $1),"
                " (SELECT count(*) FROM upload_jobs WHERE document_id = $1)",
                doc,
            )
        )

    settled, calls = await counts(), (await stages.openai_stats())["inputs_embedded"]
    third = await reprocess(stages, doc, from_stage="chunk", chunker_version=V2)
    assert (third.action, third.job_id) == ("already_active", None)
    assert await counts() == settled
    assert (await stages.openai_stats())["inputs_embedded"] == calls
    assert len(await read_topic(settings, f"{settings.topic_prefix}parsed")) == 3  # 1 + 2

    back = await reprocess(stages, doc, from_stage="chunk", chunker_version=V1)
    assert back.job_id is not None
    assert back.action == "queue"
    assert (await stages.finished(back.job_id))["status"] == "complete"
    assert await active(pool, doc) == (V1, SMALL)
    assert (await stages.openai_stats())["inputs_embedded"] == calls  # all cached


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["reprocess", *args], env=env)
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.stdout


async def test_the_cli_refuses_unknown_versions_before_publishing_and_waits_for_a_real_run(
    stages: Stages,
) -> None:
    event = await ingested(stages)
    doc, settings = str(event.document_id), stages.settings
    env = {"ACCESSA_TOPIC_PREFIX": settings.topic_prefix}
    base = ["--document", doc, "--json"]

    for bad in (
        ["--from-stage", "chunk", "--chunker-version", "markdown-simple@9"],
        ["--from-stage", "embed", "--embed-model", "text-embedding-9"],
        ["--from-stage", "embed", "--chunker-version", V2],
        ["--from-stage", "parse"],
    ):
        code, out = await asyncio.to_thread(_cli, env, *base, *bad)
        assert code == 2, out
    code, out = await asyncio.to_thread(
        _cli, env, *base, "--from-stage", "chunk", "--chunker-version", "markdown-simple@9"
    )
    assert "unknown chunker 'markdown-simple@9'" in json.loads(out)["error"]

    code, out = await asyncio.to_thread(
        _cli, env, *base, "--from-stage", "chunk", "--chunker-version", V2, "--dry-run"
    )
    assert code == 0, out
    assert [d["action"] for d in json.loads(out)["documents"]] == ["queue"]
    parsed = await read_topic(settings, f"{settings.topic_prefix}parsed")
    assert [json.loads(r.value or b"")["job_id"] for r in parsed] == [
        str(event.job_id)
    ]  # the upload's
    assert len(await read_topic(settings, f"{settings.topic_prefix}chunked")) == 1
    jobs = await stages.pool.fetchval(
        "SELECT count(*) FROM upload_jobs WHERE document_id = $1", event.document_id
    )
    assert jobs == 1

    wait = ["--from-stage", "embed", "--embed-model", LARGE, "--wait", "--timeout", "90"]
    code, out = await asyncio.to_thread(_cli, env, *base, *wait)
    assert code == 0, out
    result = json.loads(out)
    assert [j["status"] for j in result["jobs"]] == ["complete"]
    assert await active(stages.pool, event.document_id) == (V1, LARGE)

    code, out = await asyncio.to_thread(_cli, env, "status", "--document", doc, "--json")
    assert code == 0, out
    status = json.loads(out)
    assert [j["correlation_id"] for j in status["jobs"]] == [result["run"]]
    assert [(v["embed_model"], v["active"]) for v in status["versions"]] == [
        (LARGE, True),
        (SMALL, False),
    ]
    code, out = await asyncio.to_thread(
        _cli, env, "gc", "--grace", "0", "--document", doc, "--json"
    )
    assert code == 0, out
    assert [v["embed_model"] for v in json.loads(out)["versions"]] == [SMALL]
