"""pdfium, through pypdfium2 and a few direct ctypes calls: open a PDF, read its pages' lines.

pdfium's text page gives the text with line breaks; per word we ask for its box, per line for
its font (size x text matrix scale, bold by weight or name), and `lines.add_segment` builds
the visual lines. The per-word calls bypass pypdfium2's typed wrappers (see `_prototype`):
they are most of the parser's time on a text PDF. Each page's image coverage is measured too.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pypdfium2
import pypdfium2.raw as pdfium_c

from accessa.errors import PermanentError
from consumers.parser.lines import Line, Word, add_segment, extent

# PDFium keeps global state and is not thread-safe, even across separate documents.
LOCK = threading.Lock()

_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demi|cmbx|sfbx|bx\d", re.IGNORECASE)


def open_document(data: bytes) -> pypdfium2.PdfDocument:
    """Open with pdfium's own loader: pypdfium2 reports a page-less PDF as a load failure with
    a stale error code (pdfium only sets the code when loading itself fails). Call under
    `LOCK`; `data` must outlive the document."""
    handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if not handle:
        code = pdfium_c.FPDF_GetLastError()
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise PermanentError("the PDF is password-protected or encrypted", code="pdf_encrypted")
        raise PermanentError(f"not a readable PDF (pdfium error {code})", code="pdf_corrupt")
    if pdfium_c.FPDF_GetPageCount(handle) < 1:
        pdfium_c.FPDF_CloseDocument(handle)
        raise PermanentError("the PDF has no pages", code="pdf_no_pages")
    return pypdfium2.PdfDocument(handle)  # takes ownership; `data` outlives it (caller's frame)


def read_pages(
    document: pypdfium2.PdfDocument,
    page_count: int,
    deadline_s: float | None,
    coverage: list[float],
) -> list[list[Line]]:
    """Each page's lines; appends each page's image coverage to `coverage`."""
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    pages: list[list[Line]] = []
    failed = 0
    for index in range(page_count):
        if deadline is not None and time.monotonic() >= deadline:
            raise PermanentError(
                f"parsing took longer than {deadline_s:.0f}s (page {index + 1} of {page_count})",
                code="pdf_parse_timeout",
            )
        try:
            page = document[index]
        except pypdfium2.PdfiumError:
            failed += 1
            pages.append([])
            coverage.append(0.0)
            continue
        try:
            coverage.append(image_coverage(page))
            textpage = page.get_textpage()
            try:
                pages.append(page_lines(textpage))
            finally:
                textpage.close()
        finally:
            page.close()
    if failed == page_count:
        raise PermanentError("no page of the PDF could be loaded", code="pdf_corrupt")
    return pages


def image_coverage(page: pypdfium2.PdfPage) -> float:
    """Share of the page's area under image objects (their boxes clipped to the page, summed,
    capped at 1: overlapping images are rare on the pages this is for, scans). Images inside
    form XObjects count, down to `_MAX_DEPTH` levels."""
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return 0.0
    covered = 0.0
    for left, bottom, right, top in _image_bounds(page):
        w = min(right, width) - max(left, 0.0)
        h = min(top, height) - max(bottom, 0.0)
        if w > 0 and h > 0:
            covered += w * h
    return round(min(covered / (width * height), 1.0), 3)


class _Handle(ctypes.c_void_p):
    """A pdfium handle returned as is: a subclass of `c_void_p` is not converted to an int,
    so it goes back into the next call without a conversion."""


def _image_bounds(page: pypdfium2.PdfPage) -> list[tuple[float, float, float, float]]:
    """Each image object's bounds, in the order of pypdfium2's `get_objects` (pre-order,
    into forms to `_MAX_DEPTH`) but through plain ctypes calls: its wrapper object per page
    object made this the parser's largest cost on pages drawn with many paths."""
    found: list[tuple[float, float, float, float]] = []
    edges = [ctypes.c_float() for _ in range(4)]
    refs = [ctypes.byref(edge) for edge in edges]
    # (parent, its object count, next index, level); forms are rare: their calls stay typed.
    handle = ctypes.c_void_p(ctypes.cast(page.raw, ctypes.c_void_p).value)
    stack: list[tuple[Any, int, int, int]] = [(handle, _PAGE_COUNT(handle), 0, 0)]
    while stack:
        parent, count, start, level = stack.pop()
        if count < 0:
            raise pypdfium2.PdfiumError("Failed to get number of pageobjects.")
        get = _FORM_OBJECT if level else _PAGE_OBJECT
        for index in range(start, count):
            obj = get(parent, index)
            if not obj.value:
                raise pypdfium2.PdfiumError("Failed to get pageobject.")
            kind = _OBJECT_TYPE(obj)
            if kind == _IMAGE:
                if not _BOUNDS(obj, *refs):
                    raise pypdfium2.PdfiumError("Failed to locate pageobject.")
                found.append((edges[0].value, edges[1].value, edges[2].value, edges[3].value))
            elif kind == _FORM and level < _MAX_DEPTH - 1:
                stack.append((parent, count, index + 1, level))  # resume here after the form
                stack.append((obj, _FORM_COUNT(obj), 0, level + 1))
                break
    return found


def _prototype(function: Any, restype: type, *argtypes: type) -> Callable[..., Any]:
    """pdfium's `function` with plain `c_void_p` pointer arguments: converting pypdfium2's
    typed pointers costs more than the call itself, and these run once or twice a word."""
    address = ctypes.cast(function, ctypes.c_void_p).value
    # Never NULL: a symbol of the loaded pdfium library.
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)  # type: ignore[arg-type]


_PTR, _INT = ctypes.c_void_p, ctypes.c_int
# Twice a word, so not even c_void_p conversions: the caller passes (c_void_p, int, byref()).
_CHAR_BOX = _prototype(pdfium_c.FPDFText_GetLooseCharBox, _INT)
_MATRIX = _prototype(pdfium_c.FPDFText_GetMatrix, _INT, _PTR, _INT, _PTR)
_FONT_SIZE = _prototype(pdfium_c.FPDFText_GetFontSize, ctypes.c_double, _PTR, _INT)
_FONT_WEIGHT = _prototype(pdfium_c.FPDFText_GetFontWeight, _INT, _PTR, _INT)
_FONT_INFO = _prototype(
    pdfium_c.FPDFText_GetFontInfo, ctypes.c_ulong, _PTR, _INT, _PTR, ctypes.c_ulong, _PTR
)
# Once or twice per page object: untyped, the handles passed as `_Handle`s (see above).
_PAGE_COUNT = _prototype(pdfium_c.FPDFPage_CountObjects, _INT)
_PAGE_OBJECT = _prototype(pdfium_c.FPDFPage_GetObject, _Handle)
_OBJECT_TYPE = _prototype(pdfium_c.FPDFPageObj_GetType, _INT)
_BOUNDS = _prototype(pdfium_c.FPDFPageObj_GetBounds, _INT)
_FORM_COUNT = _prototype(pdfium_c.FPDFFormObj_CountObjects, _INT, _PTR)
_FORM_OBJECT = _prototype(pdfium_c.FPDFFormObj_GetObject, _Handle, _PTR, ctypes.c_ulong)
_IMAGE, _FORM = pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_FORM
_MAX_DEPTH = 8  # form XObject levels searched for images, as before (pypdfium2's max_depth)
_SEGMENT = re.compile(r"[^\r\n]+")
_WORD = re.compile(r"\S+")


def page_lines(textpage: pypdfium2.PdfTextPage) -> list[Line]:
    """The visual lines of one text page, top to bottom in pdfium's stream order."""
    count = textpage.count_chars()
    if count <= 0:
        return []
    text = textpage.get_text_range(0, count)
    if len(text) != count:
        # Characters outside the BMP shift string offsets off pdfium's indices: no geometry.
        return [Line(t.strip(), 0.0, False, 0, 0, 0, 0) for t in text.splitlines() if t.strip()]
    raw = ctypes.cast(textpage.raw, ctypes.c_void_p).value
    fonts = _Fonts(raw)  # type: ignore[arg-type]  # never NULL: pypdfium2 checked the text page
    handle = ctypes.c_void_p(raw)
    box = pdfium_c.FS_RECTF()
    box_ref = ctypes.byref(box)
    char_box = _CHAR_BOX
    lines: list[Line] = []
    for segment in _SEGMENT.finditer(text):
        start, end = segment.span()
        words: list[Word] = []
        for word in _WORD.finditer(text, start, end):
            first, after = word.span()
            char_box(handle, first, box_ref)
            left, top, bottom = box.left, box.top, box.bottom
            if after - first > 1:
                char_box(handle, after - 1, box_ref)
                # min() and max() spelt out: the same values, without two calls each.
                x0, x1, y0, y1 = box.left, box.right, box.top, box.bottom
                words.append(
                    (
                        x0 if x0 < left else left,
                        x1 if x1 > left else left,
                        y0 if y0 > top else top,
                        y1 if y1 < bottom else bottom,
                        word.group(),
                    )
                )
            else:
                x1 = box.right
                words.append((left, x1 if x1 > left else left, top, bottom, word.group()))
        if not words:
            continue
        chars = segment.group()
        size = fonts.size(start + len(chars) - len(chars.lstrip()))
        bold = fonts.bold(start + len(chars) - len(chars.lstrip())) and fonts.bold(end - 1)
        add_segment(lines, words, extent(words), size, bold)
    return lines


class _Fonts:
    """Font size and boldness of one text page's characters, reusing the call buffers."""

    def __init__(self, raw: int) -> None:
        self.raw = raw
        self.matrix = pdfium_c.FS_MATRIX()
        self.matrix_at = ctypes.addressof(self.matrix)
        self.name = ctypes.create_string_buffer(96)
        self.name_at = ctypes.addressof(self.name)

    def size(self, index: int) -> float:
        """Effective font size (Tf size x matrix scale), to 0.1."""
        m, scale = self.matrix, 1.0
        if _MATRIX(self.raw, index, self.matrix_at):
            scale = abs(m.a * m.d - m.b * m.c) ** 0.5 or 1.0
        return round(_FONT_SIZE(self.raw, index) * scale, 1)

    def bold(self, index: int) -> bool:
        """Bold by weight or by font name."""
        if _FONT_WEIGHT(self.raw, index) >= 600:
            return True
        length = _FONT_INFO(self.raw, index, self.name_at, len(self.name), None)
        if not 0 < length <= len(self.name):
            return False  # no name, or one too long for the buffer: pdfium wrote nothing
        return bool(_BOLD_FONT.search(self.name.value.decode("latin-1")))
