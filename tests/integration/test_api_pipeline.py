# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""The API's `uploaded` event is what the real stages expect: parser and chunker take an
uploaded PDF to `chunks_stored`, seen through GET /api/v2/jobs/{job_id}."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from accessa.runtime.context import StageResources
from accessa.runtime.faults import FaultInjector
from accessa.runtime.stage import StageRuntime
from accessa.storage import make_storage
from consumers.chunker.app import stage as chunker
from consumers.parser.app import stage as parser
from tests.integration.test_api_support import (  # noqa: F401
    api,
    api_settings,
    auth,
    corpus_pdf,
    unique_pdf,
    upload,
    user,
)
from tests.utils import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def stages(api_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    runtimes: list[StageRuntime[Any]] = []
    for app in (parser, chunker):
        res = StageResources(
            api_settings, pool, make_storage(api_settings), FaultInjector(api_settings, app.name)
        )
        runtime: StageRuntime[Any] = StageRuntime(app, api_settings, res)
        await runtime.start()
        runtimes.append(runtime)
    yield
    for runtime in runtimes:
        await runtime.stop()


async def test_uploaded_pdf_is_parsed_and_chunked_by_the_real_stages(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    stages: None,
) -> None:
    created = (await upload(api, auth, unique_pdf(corpus_pdf("pdflatex-4-pages.pdf")))).json()

    async def chunked() -> dict | None:
        job = (await api.get(f"/api/v2/jobs/{created['job_id']}", headers=auth)).json()
        return (
            job if job["status"] in ("chunks_stored", "failed_parse", "failed_chunking") else None
        )

    job = await wait_for(chunked, timeout=60, what="job chunked")
    assert (job["status"], job["stage"], job["progress"]) == ("chunks_stored", "chunked", 55)
    assert job["pages"] == 4 and job["chunk_count"] >= 1
    assert {"validated", "parsing", "parsed", "parse_validated", "chunked"} <= set(
        job["stage_times"]
    )
