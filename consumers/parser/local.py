"""Local PDF -> markdown on pypdfium2 (the default parser backend).

Why pypdfium2 and not pymupdf4llm: `bench/parser_compare.py` measured both on the corpus.
PyMuPDF is AGPL-3.0 (or a paid Artifex licence), which would put the whole service under the
AGPL; pdfium is Apache-2.0/BSD-3. The quality gap is small: on the generated policy both find
every heading and all 3 tables, on the 117-page book both find the same number of headings,
and this converter ran ~290 pages/s against pymupdf4llm's 3-5 (layout model) or ~7. What
pdfium loses: `unreadablemetadata.pdf` (broken trailer), which MuPDF repairs and we reject
as `pdf_corrupt`. So the product stays permissively licensed.

It composes three parts: `pdfium.py` opens the document and reads each page's visual lines
(`lines.py`, the one `Line` type), `layout.py` finds running headers and footers, watermarks
and borderless grids, and `markdown.py` writes the markdown, each page starting with
`<!-- page N -->` on its own line.
"""

from __future__ import annotations

from dataclasses import dataclass

from accessa.errors import PermanentError
from accessa.pdf.bombs import DEFAULT_MAX_EXPANDED, PdfBomb, check_expansion
from consumers.parser import pdfium
from consumers.parser.markdown import to_markdown
from schemas.events import PageQuality

PARSER_NAME = "local:pypdfium2"
DEFAULT_MAX_PAGES = 2000
DEFAULT_DEADLINE_S = 120.0
MIN_PAGE_CHARS = 20  # non-space characters below which a page's text layer is not usable


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
    with pdfium.LOCK:
        document = pdfium.open_document(data)
        try:
            page_count = len(document)
            if page_count > max_pages:
                raise PermanentError(
                    f"the PDF has {page_count} pages; at most {max_pages} are accepted",
                    code="pdf_too_many_pages",
                )
            coverage: list[float] = []
            pages = pdfium.read_pages(document, page_count, deadline_s, coverage)
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
    # Counted before `to_markdown` strips running headers and footers.
    stats = tuple(
        PageQuality(
            page=number,
            text_words=sum(len(line.text.split()) for line in lines),
            image_coverage=coverage[number - 1],
        )
        for number, lines in enumerate(pages, start=1)
    )
    return ParsedPdf(
        markdown=to_markdown(pages), pages=page_count, textless_pages=textless, page_stats=stats
    )
