"""Hybrid search (vector + full-text ranking fused by reciprocal rank) on the real Postgres:
exact terms rank first, RLS holds in both modes, and `mode=vector` is the search it was."""

from __future__ import annotations

import hashlib
import uuid

import asyncpg
import pytest

from accessa.db import user_transaction
from accessa.search import search, search_models
from mocks.openai_server import mock_vector
from producer_api.main import create_app
from tests.integration.conftest import Stages
from tests.integration.test_api_support import bearer, running

pytestmark = pytest.mark.integration

MODEL, CHUNKER = "text-embedding-3-small", "markdown-simple@1"

# Policy-like chunks that share most of their words, as sections of one wording do.
FILLER = [
    "The policy covers the insured person for medical expenses under this policy schedule.",
    "Policy holders must notify the insurer of any claim under the policy within 30 days.",
    "The policy number appears on the schedule; quote your policy number in every claim.",
    "Exclusions: the policy does not cover cosmetic treatment or experimental therapy.",
    "The waiting period for pre-existing conditions under this policy is 48 months.",
    "Renewal of the policy is subject to payment of the premium before the due date.",
]


async def add_document(pool: asyncpg.Pool, user: uuid.UUID, texts: list[str]) -> list[uuid.UUID]:
    """A completed document of `user` whose active version holds `texts` as chunks."""
    doc, job = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path,
                                  active_chunker_version, active_embed_model, active_since)
           VALUES ($1, $2, $3, 1, 'policy.pdf', 'raw', $4, $5, now())""",
        doc,
        user,
        hashlib.sha256(doc.bytes).hexdigest(),
        CHUNKER,
        MODEL,
    )
    ids = [uuid.uuid4() for _ in texts]
    await pool.executemany(
        """INSERT INTO document_chunks (chunk_id, document_id, user_id, job_id, chunker_version,
               embed_model, ordinal, content, content_sha256, token_count, embedding)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 10, $10)""",
        [
            (
                cid,
                doc,
                user,
                job,
                CHUNKER,
                MODEL,
                i,
                text,
                hashlib.sha256(text.encode()).hexdigest(),
                mock_vector(text, MODEL),
            )
            for i, (cid, text) in enumerate(zip(ids, texts, strict=True))
        ],
    )
    return ids


async def test_a_policy_number_in_one_chunk_ranks_first_in_hybrid_mode_and_other_users_never_appear(
    stages: Stages,
) -> None:
    pool, settings = stages.pool, stages.settings
    me, other = uuid.uuid4(), uuid.uuid4()
    number = f"POL-{uuid.uuid4().int % 10**6:06d}"
    mine = await add_document(pool, me, [*FILLER, f"Your policy number is {number}. " + FILLER[0]])
    # The other user's chunk holds the same number and the query's words verbatim.
    theirs = set(await add_document(pool, other, [f"What is my policy number {number}?"] * 3))

    query = f"What is my policy number {number}?"
    async with running(create_app(settings)) as api:
        by_mode = {}
        for mode in ("hybrid", "vector"):
            response = await api.get(
                "/api/v2/search",
                params={"q": query, "k": 7, "mode": mode},
                headers=bearer(settings, me),
            )
            assert response.status_code == 200, response.text
            assert response.json()["mode"] == mode
            by_mode[mode] = [uuid.UUID(h["chunk_id"]) for h in response.json()["hits"]]
        default = await api.get("/api/v2/search", params={"q": query}, headers=bearer(settings, me))
        bad = await api.get(
            "/api/v2/search", params={"q": query, "mode": "bm25"}, headers=bearer(settings, me)
        )

    assert by_mode["hybrid"][0] == mine[-1]
    assert default.json()["mode"] == "hybrid"
    assert bad.status_code == 422
    for mode, hits in by_mode.items():
        assert set(hits) == set(mine), mode  # all 7 of mine, none of theirs
        assert not set(hits) & theirs

    # Directly in the other user's scope: their chunks only, in both modes.
    vector = mock_vector(query, MODEL).tolist()
    async with user_transaction(pool, other) as conn:
        for mode in ("hybrid", "vector"):
            rows = await search(conn, query, {MODEL: vector}, 50, mode)  # type: ignore[arg-type]
            assert {h["chunk_id"] for h in rows} == theirs, mode


async def test_vector_mode_is_the_vector_search_unchanged(stages: Stages) -> None:
    pool = stages.pool
    me = uuid.uuid4()
    await add_document(pool, me, FILLER)
    query = "how long is the waiting period for conditions I already have"
    vector = mock_vector(query, MODEL).tolist()
    async with user_transaction(pool, me) as conn:
        expected = await search_models(conn, {MODEL: vector}, 5)
        got = await search(conn, query, {MODEL: vector}, 5, "vector")
        hybrid = await search(conn, query, {MODEL: vector}, 5, "hybrid")
    assert got == expected
    assert [h["score"] for h in got] == sorted((h["score"] for h in got), reverse=True)
    assert all(-1 <= h["score"] <= 1 for h in got)
    # Stemmed full text ("waiting" ~ "wait", "conditions" ~ "condit") agrees with the vectors.
    assert hybrid[0]["content"] == FILLER[4]


async def test_a_query_without_any_indexable_word_falls_back_to_the_vector_ranking(
    stages: Stages,
) -> None:
    pool = stages.pool
    me = uuid.uuid4()
    await add_document(pool, me, FILLER)
    vector = mock_vector("the of and", MODEL).tolist()
    async with user_transaction(pool, me) as conn:
        hybrid = await search(conn, "the of and", {MODEL: vector}, 3, "hybrid")
        vector_hits = await search_models(conn, {MODEL: vector}, 3)
    assert [h["chunk_id"] for h in hybrid] == [h["chunk_id"] for h in vector_hits]


async def test_a_query_holding_a_nul_byte_is_searched_not_refused_by_postgres(
    stages: Stages,
) -> None:
    """Found by schemathesis: text with NUL reached Postgres' full-text query and gave a 500."""
    pool = stages.pool
    me = uuid.uuid4()
    await add_document(pool, me, FILLER)
    query = "waiting\x00period"
    vector = mock_vector(query, MODEL).tolist()
    async with user_transaction(pool, me) as conn:
        hits = await search(conn, query, {MODEL: vector}, 3, "hybrid")
    assert len(hits) == 3
