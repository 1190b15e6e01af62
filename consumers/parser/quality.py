"""A parsed document's quality summary: per page figures and the flags they raise, in words.

A document whose pages are mostly unreadable still completes (what was read is searchable),
but its job's `quality` says so, the API and `accessa jobs` show it, and the parser counts
each flag once per document (`accessa_documents_quality_flag_total`). Flags:

- `low_ocr_confidence`: a page OCR read (after the upscaled retry) with a mean word confidence
  below ACCESSA_QUALITY_MIN_OCR_CONFIDENCE.
- `little_text_on_image_page`: an image page (images cover ACCESSA_QUALITY_IMAGE_PAGE_COVERAGE
  of it) yielded fewer than ACCESSA_QUALITY_MIN_IMAGE_PAGE_WORDS words, text layer and OCR.
- `no_text`: an image page yielded no word at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

from accessa.config import Settings
from schemas.events import PageQuality, QualityFlag

FLAGS: tuple[str, ...] = get_args(QualityFlag)


@dataclass(frozen=True)
class Thresholds:
    min_ocr_confidence: float = 0.85
    min_image_page_words: int = 20
    image_page_coverage: float = 0.5

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        return cls(
            settings.quality_min_ocr_confidence,
            settings.quality_min_image_page_words,
            settings.quality_image_page_coverage,
        )


def summarize(stats: Sequence[PageQuality], limits: Thresholds) -> dict[str, Any] | None:
    """`{"flags", "reasons", "pages"}` for the job's `quality` column; None without figures
    (a backend that reports none, e.g. LlamaParse)."""
    if not stats:
        return None
    pages: dict[str, list[PageQuality]] = {flag: [] for flag in FLAGS}
    for page in stats:
        words = page.text_words + page.ocr_words
        if page.ocr_words and (page.ocr_confidence or 0.0) < limits.min_ocr_confidence:
            pages["low_ocr_confidence"].append(page)
        if page.image_coverage >= limits.image_page_coverage:
            if words == 0:
                pages["no_text"].append(page)
            elif words < limits.min_image_page_words:
                pages["little_text_on_image_page"].append(page)
    flags = [flag for flag in FLAGS if pages[flag]]
    return {
        "flags": flags,
        "reasons": [_reason(flag, pages[flag], limits, len(stats)) for flag in flags],
        "pages": [page.model_dump() for page in stats],
    }


def _reason(flag: str, pages: list[PageQuality], limits: Thresholds, total: int) -> str:
    where = _pages(pages, total)
    if flag == "low_ocr_confidence":
        lowest = min(p.ocr_confidence or 0.0 for p in pages)
        return (
            f"OCR read {where} with low confidence (lowest mean {lowest:.2f}, below "
            f"{limits.min_ocr_confidence:.2f}): their text may be wrong or missing, so "
            "search can miss what they say"
        )
    if flag == "little_text_on_image_page":
        fewest = min(p.text_words + p.ocr_words for p in pages)
        return (
            f"{where.capitalize()} {'is a scan' if len(pages) == 1 else 'are scans'} "
            f"that yielded fewer than {limits.min_image_page_words} words (fewest "
            f"{fewest}): most of {'its' if len(pages) == 1 else 'their'} text is "
            "probably not searchable"
        )
    one = len(pages) == 1
    return (
        f"{where.capitalize()} {'is an image' if one else 'are images'} in which no text "
        f"was found: nothing on {'it' if one else 'them'} is searchable"
    )


def _pages(pages: list[PageQuality], total: int) -> str:
    numbers = [p.page for p in pages]
    shown = ", ".join(map(str, numbers[:10])) + (
        f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    )
    label = "page" if len(numbers) == 1 else "pages"
    return f"{label} {shown} of {total}"
