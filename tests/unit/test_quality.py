"""Document quality (issue 22): the parser's per page figures, the flags and reasons of the
summary, and OCR's upscaled retry of a low-confidence page."""

from __future__ import annotations

import io

import pytest

from accessa.config import Settings
from consumers.parser import ocr
from consumers.parser.local import parse_pdf
from consumers.parser.quality import Thresholds, summarize
from mocks.scanned_pdf import known_pages, scan, text_pdf
from schemas.events import PageQuality

try:
    ocr.engine()
    TESSERACT = ""
except ocr.OcrUnavailable as exc:
    TESSERACT = str(exc)
needs_tesseract = pytest.mark.skipif(bool(TESSERACT), reason=f"Tesseract: {TESSERACT}")

LIMITS = Thresholds(min_ocr_confidence=0.85, min_image_page_words=20, image_page_coverage=0.5)


def page(n: int, **figures: object) -> PageQuality:
    return PageQuality(page=n, **figures)


def test_a_text_document_has_no_flag() -> None:
    quality = summarize([page(1, text_words=300), page(2, text_words=5)], LIMITS)
    assert quality is not None
    assert quality["flags"] == [] and quality["reasons"] == []
    assert quality["pages"][0] == {
        "page": 1,
        "text_words": 300,
        "ocr_words": 0,
        "ocr_confidence": None,
        "image_coverage": 0.0,
    }


def test_the_remittance_advice_is_flagged_low_confidence_and_little_text() -> None:
    """The scan of issue 22: one image page, OCR read "PL ee" at confidence 0.699."""
    quality = summarize([page(1, ocr_words=2, ocr_confidence=0.699, image_coverage=1.0)], LIMITS)
    assert quality is not None
    assert quality["flags"] == ["low_ocr_confidence", "little_text_on_image_page"]
    low, little = quality["reasons"]
    assert "page 1 of 1" in low and "0.70" in low and "0.85" in low
    assert "fewer than 20 words" in little and "fewest 2" in little


def test_confidence_at_the_threshold_is_not_low() -> None:
    at = summarize([page(1, ocr_words=200, ocr_confidence=0.85, image_coverage=1.0)], LIMITS)
    below = summarize([page(1, ocr_words=200, ocr_confidence=0.849, image_coverage=1.0)], LIMITS)
    assert at is not None and below is not None
    assert at["flags"] == [] and below["flags"] == ["low_ocr_confidence"]


def test_an_image_page_without_a_word_is_no_text_and_a_small_image_is_no_image_page() -> None:
    quality = summarize(
        [page(1, text_words=400), page(2, image_coverage=0.9), page(3, image_coverage=0.2)],
        LIMITS,
    )
    assert quality is not None
    assert quality["flags"] == ["no_text"]
    assert quality["reasons"] == [
        "Page 2 of 3 is an image in which no text was found: nothing on it is searchable"
    ]


def test_words_of_the_text_layer_count_on_an_image_page() -> None:
    """A scan with a text layer (a searchable PDF) is no `little_text` page."""
    quality = summarize([page(1, text_words=19, ocr_words=0, image_coverage=1.0)], LIMITS)
    assert quality is not None and quality["flags"] == ["little_text_on_image_page"]
    quality = summarize([page(1, text_words=20, image_coverage=1.0)], LIMITS)
    assert quality is not None and quality["flags"] == []


def test_thresholds_come_from_settings() -> None:
    settings = Settings(
        quality_min_ocr_confidence=0.5,
        quality_min_image_page_words=1,
        quality_image_page_coverage=0.95,
    )
    limits = Thresholds.of(settings)
    quality = summarize([page(1, ocr_words=2, ocr_confidence=0.699, image_coverage=0.9)], limits)
    assert quality is not None and quality["flags"] == []


def test_no_figures_no_summary() -> None:
    assert summarize([], LIMITS) is None


def test_the_parser_counts_text_words_and_image_coverage_per_page() -> None:
    text = known_pages(1, seed=1)[0]
    parsed = parse_pdf(text_pdf([text]))
    (stats,) = parsed.page_stats
    assert stats.text_words == len(text.split()) and stats.image_coverage == 0.0
    (scanned,) = parse_pdf(scan(text_pdf([text]), dpi=72), ocr=True).page_stats
    assert scanned.text_words == 0 and scanned.image_coverage > 0.99


@needs_tesseract
@pytest.mark.parametrize("dpi", [50, 72])
def test_a_low_resolution_scan_is_read_again_upscaled_and_better(dpi: int) -> None:
    text = known_pages(1, seed=3)[0]
    pdf = scan(text_pdf([text]), dpi=dpi)
    first = ocr.ocr_pages(pdf, [1])[1]
    retried = ocr.ocr_pages(pdf, [1], retry_below=1.0)[1]  # every reading is retried
    assert first is not None and retried is not None
    assert not first.upscaled and retried.upscaled
    assert retried.score() > first.score()
    assert retried.words >= first.words and retried.confidence > first.confidence


@needs_tesseract
def test_a_confident_reading_is_not_retried() -> None:
    pdf = scan(text_pdf(known_pages(1, seed=3)), dpi=200)
    result = ocr.ocr_pages(pdf, [1], retry_below=0.85)[1]
    assert result is not None and result.confidence >= 0.85 and not result.upscaled


def _images_in_a_form_and_off_the_page() -> bytes:
    """A 200 x 100 pt page: a 100 x 100 image drawn inside a form XObject (half the page) and
    another starting at x=150 (half of it off the page), and a line of text."""
    from PIL import Image
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(200, 100))
    image = ImageReader(Image.new("RGB", (8, 8), "gray"))
    pdf.beginForm("logo")
    pdf.drawImage(image, 0, 0, 100, 100)
    pdf.endForm()
    pdf.doForm("logo")
    pdf.drawImage(image, 150, 0, 100, 100)
    pdf.drawString(10, 50, "Images inside forms count too, clipped to the page.")
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_image_coverage_counts_images_inside_forms_clipped_to_the_page() -> None:
    (stats,) = parse_pdf(_images_in_a_form_and_off_the_page()).page_stats
    assert stats.image_coverage == 0.75  # 100 x 100 in the form + 50 x 100 on the page
    assert stats.text_words == 9
