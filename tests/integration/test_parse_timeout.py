"""The parser stage fails a document that runs past its parse budget as `parse_timeout`, in one
delivery: straight to the DLQ, nothing on the retry topics, the job `failed_parse`."""

from __future__ import annotations

import pytest

from accessa import operations as ops
from accessa.topic_scan import scan
from accessa.topics import topics_for
from consumers.parser import ocr
from mocks.scanned_pdf import known_pages, text_pdf
from mocks.scanned_pdf import scan as scanned
from schemas.headers import Headers
from tests.integration.conftest import Stages

pytestmark = pytest.mark.integration

try:
    ocr.engine()
    TESSERACT = ""
except ocr.OcrUnavailable as exc:
    TESSERACT = str(exc)


@pytest.mark.skipif(bool(TESSERACT), reason=f"Tesseract: {TESSERACT}")
async def test_a_document_past_its_parse_budget_fails_once_as_parse_timeout(
    stages: Stages,
) -> None:
    stages.settings = stages.settings.model_copy(update={"parser_document_timeout_s": 0.5})
    await stages.start("parser")
    pdf = scanned(text_pdf(known_pages(8, seed=5)), dpi=300)  # seconds of OCR
    event = await stages.submit(pdf, "scan.pdf")
    job = await stages.finished(event.job_id)
    assert job["status"] == "failed_parse", job["last_error"]
    assert job["last_error"]["code"] == "parse_timeout"
    dead = await ops.dlq_records(stages.settings, document=str(event.document_id))
    assert [r.headers.get(Headers.ERROR_CODE) for r in dead] == ["parse_timeout"]
    names = topics_for(stages.settings)
    for attempt in range(1, stages.settings.retry_max_attempts + 1):
        retried = [r async for r in scan(stages.settings, names.retry("uploaded", attempt))]
        assert [r for r in retried if (r.key or b"").decode() == str(event.document_id)] == []
