"""OCR for pages without a usable text layer: Tesseract, in the parser's worker process.

Why Tesseract through tesserocr: `bench/ocr_compare.py` (figures in bench/ocr.json and the
README) measured it against RapidOCR (PP-OCRv4 on onnxruntime) and the Tesseract CLI on
generated scans. Tesseract read English policy wording almost without error at 200 dpi, where
RapidOCR's Chinese+English model ran words together, and it needs a fraction of the memory.
tesserocr calls libtesseract in-process (its wheel bundles the library, built without OpenMP,
so one page uses one core: parallelise by process, not by threads); the language data comes
from Debian's `tesseract-ocr-eng`. Without either, a page that needs OCR fails the document
as `ocr_unavailable`, saying what to install.

A page needs OCR when its text layer has fewer than `local.MIN_PAGE_CHARS` non-space
characters and it draws an image. Text pages are never OCR'd. The page is rendered at `dpi`
(capped at `MAX_PIXELS`), read once, and words Tesseract is unsure of (`MIN_WORD_CONFIDENCE`)
are dropped, so a photograph yields nothing rather than noise.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from accessa.errors import PermanentError

MIN_WORD_CONFIDENCE = 50.0  # Tesseract's 0-100 scale
DEFAULT_DPI = 300
MAX_PIXELS = 40_000_000  # an A3 page at 300 dpi is 17.5 Mpx; absurd page boxes stay bounded
PAGE_TIMEOUT_S = 60.0
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)
MARKER = re.compile(
    r"^<!-- page (\d+)(?: ocr confidence=(\d(?:\.\d+)?))? -->$", re.MULTILINE | re.IGNORECASE
)

_LOCK = threading.Lock()  # pdfium and the cached engine serve one page at a time
_ENGINE: OcrEngine | None = None


@dataclass(frozen=True)
class OcrText:
    """What OCR read on one page: paragraphs separated by blank lines, and the mean confidence
    (0-1) of the words kept."""

    text: str
    confidence: float


class OcrEngine(Protocol):
    name: str

    def read(self, image: Any) -> OcrText:
        """Text of a greyscale PIL image."""
        ...


class OcrUnavailable(Exception):
    """The OCR engine or its language data is not installed."""


class TesseractEngine:
    """libtesseract through tesserocr: LSTM, English, automatic page segmentation."""

    name = "tesseract"

    def __init__(self, lang: str = "eng", tessdata: str | None = None) -> None:
        try:
            import tesserocr
        except ImportError as exc:
            raise OcrUnavailable("the tesserocr package is not installed") from exc
        path = tessdata or _find_tessdata(lang)
        if path is None:
            raise OcrUnavailable(
                f"no Tesseract language data for {lang!r} (Debian: apt-get install "
                f"tesseract-ocr-{lang}; or set TESSDATA_PREFIX)"
            )
        self._tesserocr = tesserocr
        self._api = tesserocr.PyTessBaseAPI(path=path, lang=lang)

    def read(self, image: Any) -> OcrText:
        api, tesserocr = self._api, self._tesserocr
        api.SetImage(image)
        if not api.Recognize(timeout=int(PAGE_TIMEOUT_S * 1000)):
            raise PermanentError(
                f"OCR of a page took longer than {PAGE_TIMEOUT_S:.0f}s", code="pdf_parse_timeout"
            )
        paragraphs: list[list[str]] = []
        confidences: list[float] = []
        level = tesserocr.RIL.WORD
        iterator = api.GetIterator()
        for word in tesserocr.iterate_level(iterator, level) if iterator else ():
            try:
                text = word.GetUTF8Text(level)
            except RuntimeError:  # an empty page: the iterator stands on no word
                break
            confidence = word.Confidence(level)
            if word.IsAtBeginningOf(tesserocr.RIL.PARA) or not paragraphs:
                paragraphs.append([])
            if text and confidence >= MIN_WORD_CONFIDENCE and any(c.isalnum() for c in text):
                paragraphs[-1].append(text)
                confidences.append(confidence)
        api.Clear()
        blocks = [_dehyphenate(" ".join(words)) for words in paragraphs if words]
        mean = sum(confidences) / len(confidences) / 100 if confidences else 0.0
        return OcrText("\n\n".join(blocks), round(mean, 3))


def _find_tessdata(lang: str) -> str | None:
    prefix = os.environ.get("TESSDATA_PREFIX")
    for directory in ([prefix] if prefix else []) + list(TESSDATA_DIRS):
        if (Path(directory) / f"{lang}.traineddata").is_file():
            return directory
    return None


def _dehyphenate(text: str) -> str:
    """Join words a line break split with a hyphen ("com- pensation" -> "compensation")."""
    return re.sub(r"(?<=[a-z])- (?=[a-z])", "", text)


def engine() -> OcrEngine:
    """The process's engine, loaded on first use (a worker keeps it between documents)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = TesseractEngine()
    return _ENGINE


def ocr_pages(
    data: bytes, pages: list[int], *, dpi: int = DEFAULT_DPI, reader: OcrEngine | None = None
) -> dict[int, OcrText | None]:
    """OCR of the given 1-based pages of `data`; None for a page that draws no image (nothing
    to read). Runs in the parser's worker process. Raises PermanentError `ocr_unavailable`
    when a page needs OCR and no engine is installed."""
    results: dict[int, OcrText | None] = {}
    with _LOCK:
        document = pdfium.PdfDocument(data)
        try:
            for number in pages:
                image = _render_scan(document, number - 1, dpi)
                if image is None:
                    results[number] = None
                    continue
                try:
                    ocr = reader or engine()
                except OcrUnavailable as exc:
                    raise PermanentError(
                        f"page {number} is a scan and needs OCR, but {exc}", code="ocr_unavailable"
                    ) from exc
                results[number] = ocr.read(image)
        finally:
            document.close()
    return results


def _render_scan(document: pdfium.PdfDocument, index: int, dpi: int) -> Any | None:
    """The page as a greyscale image, or None if it draws no image."""
    try:
        page = document[index]
    except pdfium.PdfiumError:
        return None
    try:
        images = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=8)
        if next(images, None) is None:
            return None
        width, height = page.get_size()
        scale = min(dpi / 72, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
        bitmap = page.render(scale=scale, grayscale=True)
        return bitmap.to_pil().convert("L")
    finally:
        page.close()


def merge(markdown: str, results: dict[int, OcrText | None]) -> str:
    """`markdown` with each OCR'd page's content replaced by its OCR text and its marker
    saying so: `<!-- page N ocr confidence=0.93 -->`. Pages OCR found nothing on are kept."""
    found = {n: r for n, r in results.items() if r is not None and r.text.strip()}
    if not found:
        return markdown
    parts = re.split(r"^(<!-- page \d+ -->)$", markdown, flags=re.MULTILINE)
    out = [parts[0]]
    for marker, body in zip(parts[1::2], parts[2::2], strict=True):
        number = int(marker[len("<!-- page ") : -len(" -->")])
        if (result := found.get(number)) is None:
            out += [marker, body]
        else:
            out += [f"<!-- page {number} ocr confidence={result.confidence} -->",
                    f"\n\n{_escape(result.text)}\n\n"]  # fmt: skip
    return "".join(out)


def _escape(text: str) -> str:
    """OCR text stays body text: a line that would read as markdown structure is escaped."""
    return re.sub(r"^(?=#|\||>|`|<!--|-{3,}|={3,})", "\\\\", text, flags=re.MULTILINE)
