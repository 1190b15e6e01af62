# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""Issue 22: the real parser stage stores a job's quality summary in its commit; the API shows
it, lists jobs by flag (`?quality=`), refuses an unknown flag, and the metric counts once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from accessa.runtime import metrics
from accessa.runtime.context import StageResources
from accessa.runtime.faults import FaultInjector
from accessa.runtime.stage import StageRuntime
from accessa.storage import make_storage
from consumers.parser.app import stage as parser
from mocks.scanned_pdf import known_pages, scan, text_pdf
from tests.integration.test_api_support import (  # noqa: F401
    api,
    api_settings,
    auth,
    corpus_pdf,
    unique_pdf,
    upload,
    user,
)
from tests.unit.test_ocr import needs_tesseract
from tests.utils import wait_for

pytestmark = [pytest.mark.integration, needs_tesseract]


@pytest.fixture
async def parser_stage(api_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    res = StageResources(
        api_settings, pool, make_storage(api_settings), FaultInjector(api_settings, parser.name)
    )
    runtime = StageRuntime(parser, api_settings, res)
    await runtime.start()
    yield
    await runtime.stop()


def counted(flag: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("accessa_documents_quality_flag_total", {"flag": flag})
        or 0.0
    )


async def parsed(api: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> dict:
    async def done() -> dict | None:
        job = (await api.get(f"/api/v2/jobs/{job_id}", headers=auth)).json()
        return job if job["status"] in ("parse_validated", "failed_parse") else None

    return await wait_for(done, timeout=120, what=f"job {job_id} parsed")


async def test_the_parser_stores_quality_and_the_api_lists_jobs_by_flag(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    parser_stage: None,
) -> None:
    before = counted("low_ocr_confidence"), counted("none")
    fax = scan(text_pdf(known_pages(1, seed=3)), dpi=50, noise=20.0)
    bad = (await upload(api, auth, fax, name="fax.pdf")).json()["job_id"]
    good = (await upload(api, auth, unique_pdf(corpus_pdf("pdflatex-4-pages.pdf")))).json()
    bad_job, good_job = await parsed(api, auth, bad), await parsed(api, auth, good["job_id"])

    assert bad_job["status"] == "parse_validated", bad_job
    assert bad_job["quality"]["flags"] == ["low_ocr_confidence"]
    assert bad_job["quality"]["pages"][0]["ocr_confidence"] < 0.85
    assert good_job["quality"]["flags"] == []
    assert [p["page"] for p in good_job["quality"]["pages"]] == [1, 2, 3, 4]
    assert all(p["ocr_confidence"] is None for p in good_job["quality"]["pages"])

    listed = (
        await api.get("/api/v2/jobs", params={"quality": "low_ocr_confidence"}, headers=auth)
    ).json()["items"]
    assert [j["job_id"] for j in listed] == [bad]
    none = (await api.get("/api/v2/jobs", params={"quality": "no_text"}, headers=auth)).json()
    assert none["items"] == []
    wrong = await api.get("/api/v2/jobs", params={"quality": "blurry"}, headers=auth)
    assert wrong.status_code == 422 and wrong.json()["error"]["code"]

    assert (counted("low_ocr_confidence"), counted("none")) == (before[0] + 1, before[1] + 1)
