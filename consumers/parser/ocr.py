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
are dropped, so a photograph yields nothing rather than noise. A page read with a mean
confidence below `retry_below` is read once more from its own image upscaled with a Lanczos
filter to `UPSCALE_DPI` (or twice its own resolution, if that is more) and the better reading
kept. On generated scans (bench/ocr_upscale.py, bench/ocr.json) that took mean confidence
0.77 -> 0.82 and word recall 0.68 -> 0.76 at 50 dpi (0.70 -> 0.79, 0.46 -> 0.60 with fax-like
noise), 0.93 -> 0.95 at 72 dpi, and changed nothing at 100 dpi: pdfium's render loses detail
that Lanczos keeps. The retry costs one more read of the page (~1-2 s).
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
from PIL import Image

from accessa.errors import PermanentError

MIN_WORD_CONFIDENCE = 50.0  # Tesseract's 0-100 scale
DEFAULT_DPI = 300
MAX_PIXELS = 40_000_000  # an A3 page at 300 dpi is 17.5 Mpx; absurd page boxes stay bounded
PAGE_TIMEOUT_S = 60.0
UPSCALE_DPI = 300  # the retry's target resolution for a page's own image
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
    words: int = 0
    upscaled: bool = False  # read again from the page's image upscaled, and that was better

    def score(self) -> float:
        """Confidence mass of the reading: more words read surely beats fewer."""
        return self.words * self.confidence


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
        return OcrText("\n\n".join(blocks), round(mean, 3), len(confidences))


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
    data: bytes,
    pages: list[int],
    *,
    dpi: int = DEFAULT_DPI,
    reader: OcrEngine | None = None,
    retry_below: float = 0.0,
) -> dict[int, OcrText | None]:
    """OCR of the given 1-based pages of `data`; None for a page that draws no image (nothing
    to read). A reading less confident than `retry_below` (0-1) is retried once from the
    page's upscaled image. Runs in the parser's worker process. Raises PermanentError
    `ocr_unavailable` when a page needs OCR and no engine is installed."""
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
                result = ocr.read(image)
                if result.confidence < retry_below:
                    result = _retry_upscaled(document, number - 1, ocr, result)
                results[number] = result
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


def _retry_upscaled(
    document: pdfium.PdfDocument, index: int, ocr: OcrEngine, first: OcrText
) -> OcrText:
    """`first`, or a reading of the page's largest image upscaled if that scores better."""
    image = upscaled_image(document, index)
    if image is None:
        return first
    second = ocr.read(image)
    if second.score() <= first.score():
        return first
    return OcrText(second.text, second.confidence, second.words, upscaled=True)


def upscaled_image(document: pdfium.PdfDocument, index: int) -> Any | None:
    """The page's largest image at its own pixels, upscaled (Lanczos) to `UPSCALE_DPI` or twice
    its resolution, whichever is more (capped at `MAX_PIXELS`); None if it has no image or its
    image is already that sharp. Other page content is left out: a scan is one image."""
    page = document[index]
    try:
        best, best_area = None, 0.0
        for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=8):
            left, bottom, right, top = obj.get_bounds()
            if (area := (right - left) * (top - bottom)) > best_area:
                best, best_area = obj, area
        if best is None:
            return None
        left, bottom, right, top = best.get_bounds()
        native = best.get_bitmap().to_pil().convert("L")
        own_dpi = native.width / max((right - left) / 72, 1e-6)
        target = max(UPSCALE_DPI, 2 * own_dpi)
        scale = min(target / own_dpi, (MAX_PIXELS / max(native.width * native.height, 1)) ** 0.5)
        if scale <= 1.0:
            return None
        size = (round(native.width * scale), round(native.height * scale))
        return native.resize(size, Image.Resampling.LANCZOS)
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
            out += [
                f"<!-- page {number} ocr confidence={result.confidence} -->",
                f"\n\n{_escape(result.text)}\n\n",
            ]
    return "".join(out)


def _escape(text: str) -> str:
    """OCR text stays body text: a line that would read as markdown structure is escaped."""
    return re.sub(r"^(?=#|\||>|`|<!--|-{3,}|={3,})", "\\\\", text, flags=re.MULTILINE)
