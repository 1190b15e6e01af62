"""Local PDF -> markdown on pypdfium2 (the default parser backend).

Why pypdfium2 and not pymupdf4llm: `bench/parser_compare.py` measured both on the corpus.
PyMuPDF is AGPL-3.0 (or a paid Artifex licence), which would put the whole service under the
AGPL; pdfium is Apache-2.0/BSD-3. The quality gap is small: on the generated policy both find
every heading and all 3 tables, on the 117-page book both find the same number of headings,
and this converter ran ~290 pages/s against pymupdf4llm's 3-5 (layout model) or ~7. What
pdfium loses: `unreadablemetadata.pdf` (broken trailer), which MuPDF repairs and we reject
as `pdf_corrupt`. So the product stays permissively licensed.

How it reads a page: pdfium's text page gives the text with line breaks; per word we ask for
its box, per line for its font (size x text matrix scale, bold by weight or name). Then:
headings are lines clearly larger than the body size or bold at body size, short and
standalone; bullets and numbered lines become markdown list items; runs of two or more lines
whose words sit in aligned, widely spaced columns become markdown tables; everything else is
joined into paragraphs; a bold line inside a paragraph is not a heading. Running headers and
footers, watermarks and borderless grids drawn cell by cell are handled in `layout.py`. Each
page starts with `<!-- page N -->` on its own line.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from accessa.errors import PermanentError
from accessa.pdf_bombs import DEFAULT_MAX_EXPANDED, PdfBomb, check_expansion
from consumers.parser import layout
from schemas.events import PageQuality

PARSER_NAME = "local:pypdfium2"
DEFAULT_MAX_PAGES = 2000
DEFAULT_DEADLINE_S = 120.0
MIN_PAGE_CHARS = 20  # non-space characters below which a page's text layer is not usable

# PDFium keeps global state and is not thread-safe, even across separate documents.
_PDFIUM_LOCK = threading.Lock()

_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demi|cmbx|sfbx|bx\d", re.IGNORECASE)
_BULLETS = "•◦▪▫●○■□‣\u2043∙·\uf0a7\uf0b7\uf076\uf0d8"  # \uf0..: Symbol/Wingdings bullets
_DASHES = "\u2013\u2014*-"
_BULLET = re.compile(rf"^(?:[{_BULLETS}]\s*|[{_DASHES}]\s+)(\S.*)$")
_ORDERED = re.compile(r"^(\d{1,3})[.)]\s+(\S.*)$")
_LETTERED = re.compile(r"^(\(?(?:[a-z]|[ivx]{1,4})\)|\([A-Z]\))\s+(\S.*)$")
_LONE_MARKER = re.compile(rf"^(?:[{_BULLETS}{_DASHES}]|\d{{1,3}}[.)]|\(?[a-z]\))$")
_MARKDOWN_START = re.compile(r"^(#|\||>|`|<!--|=+$|-{3,}$)")
_SOFT_HYPHENS = ("\ufffe", "\x02", "\u00ad")


@dataclass(frozen=True)
class ParsedPdf:
    """The markdown of a whole PDF, its page count and the parser that produced it."""

    markdown: str
    pages: int
    parser: str = PARSER_NAME
    # 1-based pages whose text layer has fewer than MIN_PAGE_CHARS characters: OCR candidates.
    textless_pages: tuple[int, ...] = ()
    # Per page: text-layer words and image coverage (OCR figures are added by the OCR step).
    page_stats: tuple[PageQuality, ...] = ()


@dataclass(slots=True)
class _Line:
    """One visual line: its text, word groups separated by wide gaps, geometry and font."""

    text: str
    size: float
    bold: bool
    x0: float
    x1: float
    top: float
    bottom: float
    cells: list[tuple[float, float, str]] = field(default_factory=list)


def parse_pdf(
    data: bytes,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    deadline_s: float | None = DEFAULT_DEADLINE_S,
    max_expanded_bytes: int = DEFAULT_MAX_EXPANDED,
    ocr: bool = False,
) -> ParsedPdf:
    """Convert a PDF to markdown with one `<!-- page N -->` marker per page.

    Raises `PermanentError` with code `pdf_encrypted`, `pdf_corrupt`, `pdf_no_pages`,
    `pdf_too_many_pages`, `pdf_parse_timeout`, `pdf_bomb` or `no_text_layer` (only without
    `ocr`: with it, pages without text are left to the OCR step, see `textless_pages`).
    Synchronous: the stage runs it in a thread; calls are serialized by a module lock.
    """
    if not data:
        raise PermanentError("the file is empty", code="pdf_corrupt")
    try:
        check_expansion(data, max_expanded_bytes)
    except PdfBomb as exc:
        raise PermanentError(str(exc), code="pdf_bomb") from exc
    with _PDFIUM_LOCK:
        document = _open(data)
        try:
            page_count = len(document)
            if page_count > max_pages:
                raise PermanentError(
                    f"the PDF has {page_count} pages; at most {max_pages} are accepted",
                    code="pdf_too_many_pages",
                )
            coverage: list[float] = []
            pages = _read_pages(document, page_count, deadline_s, coverage)
        finally:
            # Close here, under the lock, rather than leaving it to a finalizer on another thread.
            document.close()
    textless = tuple(
        number
        for number, lines in enumerate(pages, start=1)
        if sum(len("".join(line.text.split())) for line in lines) < MIN_PAGE_CHARS
    )
    if not ocr and not any(line.text.strip() for lines in pages for line in lines):
        raise PermanentError(
            "the PDF has no text layer (scanned or image-only) and OCR is off",
            code="no_text_layer",
        )
    # Counted before `_to_markdown` strips running headers and footers.
    stats = tuple(
        PageQuality(
            page=number,
            text_words=sum(len(line.text.split()) for line in lines),
            image_coverage=coverage[number - 1],
        )
        for number, lines in enumerate(pages, start=1)
    )
    return ParsedPdf(markdown=_to_markdown(pages), pages=page_count, textless_pages=textless,
                     page_stats=stats)  # fmt: skip


def _open(data: bytes) -> pdfium.PdfDocument:
    """Open with pdfium's own loader: pypdfium2 reports a page-less PDF as a load failure with
    a stale error code (pdfium only sets the code when loading itself fails)."""
    handle = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if not handle:
        code = pdfium_c.FPDF_GetLastError()
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise PermanentError("the PDF is password-protected or encrypted", code="pdf_encrypted")
        raise PermanentError(f"not a readable PDF (pdfium error {code})", code="pdf_corrupt")
    if pdfium_c.FPDF_GetPageCount(handle) < 1:
        pdfium_c.FPDF_CloseDocument(handle)
        raise PermanentError("the PDF has no pages", code="pdf_no_pages")
    return pdfium.PdfDocument(handle)  # takes ownership; `data` outlives it (caller's frame)


def _read_pages(
    document: pdfium.PdfDocument, page_count: int, deadline_s: float | None,
    coverage: list[float],
) -> list[list[_Line]]:  # fmt: skip
    """Each page's lines; appends each page's image coverage to `coverage`."""
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    pages: list[list[_Line]] = []
    failed = 0
    for index in range(page_count):
        if deadline is not None and time.monotonic() >= deadline:
            raise PermanentError(
                f"parsing took longer than {deadline_s:.0f}s (page {index + 1} of {page_count})",
                code="pdf_parse_timeout",
            )
        try:
            page = document[index]
        except pdfium.PdfiumError:
            failed += 1
            pages.append([])
            coverage.append(0.0)
            continue
        try:
            coverage.append(image_coverage(page))
            textpage = page.get_textpage()
            try:
                pages.append(_page_lines(textpage))
            finally:
                textpage.close()
        finally:
            page.close()
    if failed == page_count:
        raise PermanentError("no page of the PDF could be loaded", code="pdf_corrupt")
    return pages


def image_coverage(page: pdfium.PdfPage) -> float:
    """Share of the page's area under image objects (their boxes clipped to the page, summed,
    capped at 1: overlapping images are rare on the pages this is for, scans)."""
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return 0.0
    covered = 0.0
    for image in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=8):
        left, bottom, right, top = image.get_bounds()
        w = min(right, width) - max(left, 0.0)
        h = min(top, height) - max(bottom, 0.0)
        if w > 0 and h > 0:
            covered += w * h
    return round(min(covered / (width * height), 1.0), 3)


def _prototype(function: object, restype: type, *argtypes: type) -> Callable[..., Any]:
    """pdfium's `function` with plain `c_void_p` pointer arguments: converting pypdfium2's
    typed pointers costs more than the call itself, and these run once or twice a word."""
    address = ctypes.cast(function, ctypes.c_void_p).value
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


_PTR, _INT = ctypes.c_void_p, ctypes.c_int
# Twice a word, so not even c_void_p conversions: the caller passes (c_void_p, int, byref()).
_CHAR_BOX = _prototype(pdfium_c.FPDFText_GetLooseCharBox, _INT)
_MATRIX = _prototype(pdfium_c.FPDFText_GetMatrix, _INT, _PTR, _INT, _PTR)
_FONT_SIZE = _prototype(pdfium_c.FPDFText_GetFontSize, ctypes.c_double, _PTR, _INT)
_FONT_WEIGHT = _prototype(pdfium_c.FPDFText_GetFontWeight, _INT, _PTR, _INT)
_FONT_INFO = _prototype(
    pdfium_c.FPDFText_GetFontInfo, ctypes.c_ulong, _PTR, _INT, _PTR, ctypes.c_ulong, _PTR
)
_SEGMENT = re.compile(r"[^\r\n]+")
_WORD = re.compile(r"\S+")


def _page_lines(textpage: pdfium.PdfTextPage) -> list[_Line]:
    count = textpage.count_chars()
    if count <= 0:
        return []
    text = textpage.get_text_range(0, count)
    if len(text) != count:
        # Characters outside the BMP shift string offsets off pdfium's indices: no geometry.
        return [_Line(t.strip(), 0.0, False, 0, 0, 0, 0) for t in text.splitlines() if t.strip()]
    raw = ctypes.cast(textpage.raw, ctypes.c_void_p).value
    fonts = _Fonts(raw)
    handle = ctypes.c_void_p(raw)
    box = pdfium_c.FS_RECTF()
    box_ref = ctypes.byref(box)
    char_box = _CHAR_BOX
    lines: list[_Line] = []
    for segment in _SEGMENT.finditer(text):
        start, end = segment.span()
        words = []
        for word in _WORD.finditer(text, start, end):
            first, after = word.span()
            char_box(handle, first, box_ref)
            left, top, bottom = box.left, box.top, box.bottom
            if after - first > 1:
                char_box(handle, after - 1, box_ref)
                # min() and max() spelt out: the same values, without two calls each.
                x0, x1, y0, y1 = box.left, box.right, box.top, box.bottom
                words.append(
                    (x0 if x0 < left else left, x1 if x1 > left else left,
                     y0 if y0 > top else top, y1 if y1 < bottom else bottom, word.group())
                )  # fmt: skip
            else:
                x1 = box.right
                words.append((left, x1 if x1 > left else left, top, bottom, word.group()))
        if not words:
            continue
        chars = segment.group()
        size = fonts.size(start + len(chars) - len(chars.lstrip()))
        bold = fonts.bold(start + len(chars) - len(chars.lstrip())) and fonts.bold(end - 1)
        _add_segment(lines, words, _extent(words), size, bold)
    return lines


def _extent(words: list) -> tuple[float, float, float, float]:
    """min x0, max x1, max top, min bottom of the words: min() and max() as they compare, in
    one pass rather than four."""
    x0, x1, top, bottom, _ = words[0]
    for left, right, high, low, _ in words:
        if left < x0:
            x0 = left
        if right > x1:
            x1 = right
        if high > top:
            top = high
        if low < bottom:
            bottom = low
    return x0, x1, top, bottom


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


def _add_segment(
    lines: list[_Line],
    words: list,
    extent: tuple[float, float, float, float],
    size: float,
    bold: bool,
) -> None:
    """Append pdfium's segment to the previous line if it sits on the same baseline."""
    x0, x1, top, bottom = extent
    middle = (top + bottom) / 2
    previous = lines[-1] if lines else None
    text = " ".join([w[4] for w in words])
    if previous is not None and previous.bottom <= middle <= previous.top:
        line = previous
        line.size = max(line.size, size) if line.size else size
        line.bold = line.bold and bold
        line.top, line.bottom = max(line.top, top), min(line.bottom, bottom)
        line.x1 = max(line.x1, x1)
        line.text = f"{line.text} {text}"
    else:
        line = _Line(text, size, bold, x0, x1, top, bottom)
        lines.append(line)
    gap = max(size, 4.0)
    cells = line.cells
    for x0, x1, _, _, word in words:
        # A bullet or number drawn apart from its text still belongs to it (not a table column).
        if cells and (x0 - cells[-1][1] <= gap or _LONE_MARKER.match(cells[-1][2])):
            last = cells[-1]
            cells[-1] = (last[0], x1 if x1 > last[1] else last[1], f"{last[2]} {word}")
        else:
            cells.append((x0, x1, word))


# --- page layout -> markdown


def _to_markdown(pages: list[list[_Line]]) -> str:
    layout.strip_furniture(pages)
    body = _body_size(pages)
    for lines in pages:
        layout.drop_watermarks(lines, body)
    levels = _heading_levels(pages, body)
    parts: list[str] = []
    for number, lines in enumerate(pages, start=1):
        parts.append(f"<!-- page {number} -->")
        parts.extend(_blocks(lines, body, levels))
    return "\n\n".join(parts) + "\n"


def _body_size(pages: list[list[_Line]]) -> float:
    sizes: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            if line.size > 0:
                sizes[round(line.size * 2) / 2] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _heading_levels(pages: list[list[_Line]], body: float) -> dict[float, int]:
    """Markdown level per heading font size: larger sizes first, bold body text last."""
    if body <= 0:
        return {}
    large = sorted(
        {round(line.size * 2) / 2 for lines in pages for line in lines if _is_large(line, body)},
        reverse=True,
    )
    levels = {size: min(rank, 5) for rank, size in enumerate(large, start=1)}
    levels[0.0] = min(len(large) + 1, 6)  # bold at body size
    return levels


def _is_large(line: _Line, body: float) -> bool:
    return line.size >= body * 1.25 and _heading_text(line.text)


def _heading_text(text: str) -> bool:
    return (
        0 < len(text) <= 150 and any(c.isalpha() for c in text) and not layout.is_letterspaced(text)
    )


def _heading_level(line: _Line, body: float, levels: dict[float, int]) -> int:
    if body <= 0 or not _heading_text(line.text):
        return 0
    if line.size >= body * 1.25:
        return levels.get(round(line.size * 2) / 2, 0)
    if line.bold and line.size >= body * 0.95 and not line.text.endswith((".", ",", ";")):
        return levels.get(0.0, 0)
    return 0


def _blocks(lines: list[_Line], body: float, levels: dict[float, int]) -> list[str]:
    blocks: list[str] = []
    grids = layout.grids(lines)
    heads = [_line_level(lines, k, body, levels) for k in range(len(lines))]
    i = 0
    while i < len(lines):
        line = lines[i]
        if i in grids:
            i, rows = grids[i]
            blocks.append(_table_markdown(rows))
            continue
        table, i_next = _table_at(lines, i)
        if table:
            blocks.append(table)
            i = i_next
            continue
        level = heads[i]
        i += 1
        if level:
            text = line.text
            while (
                i < len(lines)
                and heads[i] == level
                and _close_below(line, lines[i], 0.6)
                and len(text) + len(lines[i].text) <= 150
            ):
                text, line = f"{text} {lines[i].text}", lines[i]
                i += 1
            blocks.append(f"{'#' * level} {_clean(text)}")
            continue
        item = _list_item(line.text)
        text = item or _escape(line.text)
        while i < len(lines) and _continues(line, lines[i], heads[i], is_item=bool(item)):
            text = _join(text, lines[i].text)
            line = lines[i]
            i += 1
        blocks.append(_clean(text))
    return blocks


def _line_level(lines: list[_Line], i: int, body: float, levels: dict[float, int]) -> int:
    level = _heading_level(lines[i], body, levels)
    if level and lines[i].size < body * 1.25 and _inside_paragraph(lines, i, body, levels):
        return 0
    return level


def _inside_paragraph(lines: list[_Line], i: int, body: float, levels: dict[float, int]) -> bool:
    """A bold line is no heading when the text before runs into it or it runs on into the
    next line: a bold sentence inside a paragraph."""
    line = lines[i]
    unit = max(line.size, 4.0)
    if i > 0:
        before = lines[i - 1]
        if (
            _close_below(before, line, 0.6)
            and not _heading_level(before, body, levels)
            and not before.text.rstrip().endswith((".", "!", "?", ":"))
            and abs(before.x0 - line.x0) < unit
        ):
            return True
    if i + 1 < len(lines):
        after = lines[i + 1]
        if (
            _close_below(line, after, 0.6)
            and not after.bold
            and abs(after.x0 - line.x0) < unit
            and line.x1 >= after.x1 - unit
        ):
            return True
    return False


def _list_item(text: str) -> str | None:
    if match := _BULLET.match(text):
        return f"- {match.group(1)}"
    if match := _ORDERED.match(text):
        return f"{match.group(1)}. {match.group(2)}"
    if match := _LETTERED.match(text):
        return f"- {match.group(1)} {match.group(2)}"
    return None


def _continues(previous: _Line, line: _Line, heading: int, *, is_item: bool) -> bool:
    """Whether `line` continues the paragraph or list item that `previous` ends."""
    if not _close_below(previous, line, 0.6):
        return False
    if abs(previous.size - line.size) > 1.5:
        return False
    if heading or _list_item(line.text):
        return False
    ends_sentence = previous.text.rstrip().endswith((".", "!", "?", ":", '"', "”"))
    unit = max(line.size, 4.0)
    if is_item:
        return line.x0 >= previous.x0 - unit * 0.5
    indented = line.x0 > previous.x0 + unit * 0.8
    ended_short = previous.x1 < line.x1 - unit * 3
    return not (ends_sentence and (indented or ended_short))


def _close_below(previous: _Line, line: _Line, gap: float) -> bool:
    """`line` starts below `previous` with at most `gap` x font size of white space between."""
    unit = max(previous.size, line.size, 4.0)
    return previous.bottom > line.bottom and previous.bottom - line.top <= unit * gap


def _join(text: str, more: str) -> str:
    if text.endswith(("\ufffe", "\x02", "\u00ad")):
        return text[:-1] + more
    if text.endswith("-") and len(text) > 1 and text[-2].isalpha():
        return text + more
    return f"{text} {more}"


def _table_at(lines: list[_Line], start: int) -> tuple[str | None, int]:
    """A markdown table if `lines[start:]` begins with two or more aligned multi-column rows."""
    end = start
    while end < len(lines) and len(lines[end].cells) >= 2:
        if end > start and not _close_below(lines[end - 1], lines[end], 2.0):
            break
        end += 1
    if end - start < 2:
        return None, start
    rows = lines[start:end]
    cells = [cell for row in rows for cell in row.cells]
    if sum(len(c[2]) for c in cells) / len(cells) > 60:
        return None, start  # long "cells" are prose columns, not a table
    columns = layout.column_spans(cells)
    if len(columns) < 2:
        return None, start
    table = []
    for row in rows:
        values = [""] * len(columns)
        for x0, x1, text in row.cells:
            index = next(
                (k for k, (c0, c1) in enumerate(columns) if c0 <= (x0 + x1) / 2 <= c1),
                len(columns) - 1,
            )
            values[index] = f"{values[index]} {text}".strip()
        table.append(values)
    return _table_markdown(table), end


def _table_markdown(rows: list[list[str]]) -> str:
    """Rows of cell texts as a markdown table; the first row is its header. A grid too sparse
    for one (see `layout.irregular`) comes out as `label: value` blocks instead."""
    if layout.irregular(rows):
        blocks = layout.label_value([[_clean(cell) for cell in row] for row in rows])
        return "\n".join(_escape(line) for line in blocks.split("\n"))
    table = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    table.insert(1, "|" + " --- |" * len(rows[0]))
    return "\n".join(table)


def _cell(text: str) -> str:
    return _clean(text).replace("|", "\\|")


def _escape(text: str) -> str:
    """Keep body text from reading as markdown structure (headings, tables, fences, markers)."""
    return "\\" + text if _MARKDOWN_START.match(text) else text


def _clean(text: str) -> str:
    for hyphen in _SOFT_HYPHENS:  # str.replace, not str.translate: ten times faster here
        if hyphen in text:
            text = text.replace(hyphen, "")
    return text.strip()
