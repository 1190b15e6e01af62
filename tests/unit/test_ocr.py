"""OCR of scanned pages (issue 12): generated scans of known text are read back, only pages
without a usable text layer go through OCR, and the chunks say which text came from it."""

from __future__ import annotations

import asyncio
import io
import uuid

import pypdf
import pytest
from rapidfuzz.distance import Levenshtein

from accessa.errors import PermanentError
from accessa.text import has_text, normalize_markdown
from consumers.chunker.app import chunk_metadata
from consumers.chunker.chunking import chunk_markdown
from consumers.parser import ocr
from consumers.parser.backends import LocalBackend, Progress
from consumers.parser.local import ParsedPdf, parse_pdf
from mocks.scanned_pdf import known_pages, scan, text_pdf

try:
    ocr.engine()
    TESSERACT = ""
except ocr.OcrUnavailable as exc:
    TESSERACT = str(exc)
needs_tesseract = pytest.mark.skipif(bool(TESSERACT), reason=f"Tesseract: {TESSERACT}")

TRUTH = known_pages(2, seed=7)


def _cer(reference: str, hypothesis: str) -> float:
    reference, hypothesis = " ".join(reference.split()), " ".join(hypothesis.split())
    return Levenshtein.distance(reference, hypothesis) / len(reference)


def _mixed() -> bytes:
    """Page 1 typeset text, page 2 a 200-dpi scan of other known text."""
    writer = pypdf.PdfWriter()
    writer.append(pypdf.PdfReader(io.BytesIO(text_pdf([TRUTH[0]]))))
    writer.append(pypdf.PdfReader(io.BytesIO(scan(text_pdf([TRUTH[1]]), dpi=200, seed=2))))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


class CountingEngine:
    """Stands in for Tesseract: records the pages it is given."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def read(self, image: object) -> ocr.OcrText:
        self.calls += 1
        return ocr.OcrText("counted text", 0.5)


@needs_tesseract
def test_a_scanned_page_at_200_dpi_reads_back_under_2_percent_cer() -> None:
    data = scan(text_pdf([TRUTH[0]]), dpi=200, seed=1)
    assert parse_pdf(data, ocr=True).textless_pages == (1,)
    result = ocr.ocr_pages(data, [1], dpi=200)[1]
    assert result is not None
    assert _cer(TRUTH[0], result.text) <= 0.02
    assert {"excess", "schedule", "policy"} & set(result.text.lower().split())
    assert 0.8 < result.confidence <= 1.0


def test_a_text_page_never_goes_through_ocr() -> None:
    data = text_pdf(TRUTH)
    assert parse_pdf(data, ocr=True).textless_pages == ()
    # Even when asked, a page that draws no image is not handed to the engine.
    engine = CountingEngine()
    assert ocr.ocr_pages(data, [1, 2], reader=engine) == {1: None, 2: None}
    assert engine.calls == 0


def test_only_the_scanned_page_of_a_mixed_document_is_ocr_candidate() -> None:
    parsed = parse_pdf(_mixed(), ocr=True)
    assert parsed.textless_pages == (2,)
    engine = CountingEngine()
    assert ocr.ocr_pages(_mixed(), [2], reader=engine)[2] == ocr.OcrText("counted text", 0.5)
    assert engine.calls == 1


@needs_tesseract
def test_a_mixed_document_gives_both_pages_and_marks_only_the_scanned_one() -> None:
    parsed = asyncio.run(_parse(LocalBackend(), _mixed()))
    markdown = normalize_markdown(parsed.markdown)
    assert "<!-- page 1 -->" in markdown
    assert "<!-- page 2 ocr confidence=" in markdown
    page1, page2 = markdown.split("<!-- page 2 ocr", 1)
    assert _cer(TRUTH[0], page1.replace("<!-- page 1 -->", "")) <= 0.02
    assert _cer(TRUTH[1], page2.split("-->", 1)[1]) <= 0.02

    chunks = chunk_markdown(markdown, document_id=uuid.uuid4(), target_tokens=64)
    by_page = {(c.page_start, c.page_end): chunk_metadata(c) for c in chunks}
    assert "ocr" not in by_page[(1, 1)]
    assert by_page[(2, 2)]["ocr"] is True and 0.8 < by_page[(2, 2)]["ocr_confidence"] <= 1


@needs_tesseract
def test_ocr_reports_progress_per_batch() -> None:
    pages = scan(text_pdf(known_pages(5, seed=3, sentences_per_page=2)), dpi=150)
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        seen.append((done, total))

    parsed = asyncio.run(_parse(LocalBackend(ocr_dpi=150), pages, progress))
    assert parsed.markdown.count(" ocr confidence=") == 5
    assert seen == [(0, 5), (4, 5), (5, 5)]


def test_with_ocr_off_a_scan_is_no_text_layer() -> None:
    data = scan(text_pdf([TRUTH[0]]), dpi=150)
    with pytest.raises(PermanentError) as raised:
        asyncio.run(_parse(LocalBackend(ocr_enabled=False), data))
    assert raised.value.code == "no_text_layer"
    with pytest.raises(PermanentError) as raised:
        parse_pdf(data)
    assert raised.value.code == "no_text_layer"


def test_without_tesseract_a_scan_fails_as_ocr_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocr, "_ENGINE", None)
    monkeypatch.setattr(ocr, "TESSDATA_DIRS", ())
    monkeypatch.setenv("TESSDATA_PREFIX", "/nonexistent")
    with pytest.raises(PermanentError) as raised:
        ocr.ocr_pages(scan(text_pdf([TRUTH[0]]), dpi=150), [1])
    assert raised.value.code == "ocr_unavailable"
    assert "needs OCR" in raised.value.message and "tesseract-ocr-eng" in raised.value.message


def test_merge_replaces_only_pages_ocr_read() -> None:
    markdown = "<!-- page 1 -->\n\nText.\n\n<!-- page 2 -->\n\n<!-- page 3 -->\n\n12\n"
    merged = ocr.merge(
        markdown, {2: ocr.OcrText("# not a heading\n\nRead.", 0.91), 3: ocr.OcrText("", 0.0)}
    )
    assert merged == (
        "<!-- page 1 -->\n\nText.\n\n<!-- page 2 ocr confidence=0.91 -->\n\n"
        "\\# not a heading\n\nRead.\n\n<!-- page 3 -->\n\n12\n"
    )
    assert has_text("<!-- page 1 ocr confidence=0.9 -->\n") is False


async def _parse(backend: LocalBackend, data: bytes, progress: Progress | None = None) -> ParsedPdf:
    try:
        return await backend.parse(data, "scan.pdf", document_id=uuid.uuid4(), progress=progress)
    finally:
        backend.worker.close()
