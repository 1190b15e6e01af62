"""Every PDF of the shared corpus, uploaded through the API to the running pipeline, ends
`complete` or in its expected failed state with a readable reason."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from accessa.ops.localrun import LocalPipeline
from consumers.chunker.chunking import chunk_markdown
from tests.unit.test_local_parser import EXPECTED
from tests.utils import CORPUS, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REFUSED_AT_THE_DOOR = {"pdf_encrypted", "pdf_corrupt"}  # the API validates before a job exists


async def upload(client, name: str) -> dict:
    files = {"file": (name, (CORPUS / name).read_bytes(), "application/pdf")}
    response = await client.post("/api/v2/documents", files=files)
    return {**response.json(), "http_status": response.status_code}


async def finished(client, job_id: str, timeout: float = 240) -> dict:
    async def done() -> dict | None:
        job = (await client.get(f"/api/v2/jobs/{job_id}")).json()
        return job if job["state"] in ("done", "deadletter") else None

    return await wait_for(done, timeout=timeout, interval=0.5, what=f"job {job_id}")


@pytest.fixture(scope="module")
def corpus_run(pipeline: LocalPipeline) -> dict[str, dict]:
    """Upload the whole corpus once for one user; every outcome by file name."""
    user = uuid.uuid4()

    async def run() -> dict[str, dict]:
        async with pipeline.client(user) as client:
            answers = {name: await upload(client, name) for name in sorted(EXPECTED)}
            jobs = [a["job_id"] for a in answers.values() if a["http_status"] in (200, 202)]
            results = await asyncio.gather(*(finished(client, j) for j in jobs))
            by_job = {r["job_id"]: r for r in results}
            return {n: by_job.get(a.get("job_id"), a) for n, a in answers.items()}

    outcomes = asyncio.run(run())
    outcomes["__user__"] = {"user": str(user)}
    return outcomes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_ends_in_its_expected_state(name: str, corpus_run: dict[str, dict]) -> None:
    outcome, expected = corpus_run[name], EXPECTED[name]
    if isinstance(expected, tuple):
        assert (outcome["status"], outcome["state"]) == ("complete", "done"), outcome
        assert outcome["progress"] == 100
        assert outcome["chunk_count"] == outcome["vector_count"] > 0
    elif expected in REFUSED_AT_THE_DOOR:
        assert outcome["http_status"] == 422
        assert outcome["error"]["code"] == expected
        assert outcome["error"]["message"] and outcome["error"]["correlation_id"]
    else:
        assert (outcome["status"], outcome["state"]) == ("failed_parse", "deadletter"), outcome
        assert outcome["last_error"]["code"] == expected
        assert len(outcome["last_error"]["message"]) > 10  # a readable reason


def test_chunk_ids_are_the_same_whenever_the_same_markdown_is_chunked(
    pipeline: LocalPipeline, corpus_run: dict[str, dict]
) -> None:
    import asyncpg

    async def check() -> None:
        conn = await asyncpg.connect(pipeline.settings.dsn)
        try:
            job = corpus_run["GeoTopo-komprimiert.pdf"]
            doc = uuid.UUID(job["document_id"])
            stored = await conn.fetch(
                "SELECT chunk_id FROM upload_pipeline.document_chunks WHERE document_id = $1 "
                "ORDER BY ordinal",
                doc,
            )
            path = await conn.fetchval(
                "SELECT parsed_path FROM upload_pipeline.documents WHERE document_id = $1", doc
            )
        finally:
            await conn.close()
        markdown = (pipeline.settings.storage_root / path).read_text()
        again = chunk_markdown(markdown, document_id=doc, version=pipeline.settings.chunker_version)
        assert [c.chunk_id for c in again] == [r["chunk_id"] for r in stored]
        assert len(stored) == job["chunk_count"] > 100

    asyncio.run(check())
