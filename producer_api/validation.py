"""What an uploaded file must be: a PDF that opens without a password and has a page; and
what its display name may contain. Pure functions: the routes map the errors to responses."""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from accessa.pdf.bombs import DEFAULT_MAX_EXPANDED, PdfBomb, check_expansion
from producer_api.core.errors import ApiError

MAX_FILENAME_BYTES = 255
FALLBACK_NAME = "document.pdf"
# The spec lets a PDF header start anywhere in the first 1024 bytes; readers accept that.
_HEADER_WINDOW = 1024
_UNSAFE = set('/\\:*?"<>|')
# pdfium is not thread-safe; validations run in worker threads, one at a time.
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class PdfInfo:
    pages: int


def sanitize_filename(name: str) -> str:
    """A display name safe to store and show: NFC, last path component only, no control or
    format characters, no leading dots, at most 255 UTF-8 bytes (extension kept)."""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = []
    for ch in name:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            continue
        kept.append("_" if ch in _UNSAFE else " " if category.startswith("Z") else ch)
    name = " ".join("".join(kept).split()).lstrip(". ")
    if not name:
        return FALLBACK_NAME
    return _truncate(name, MAX_FILENAME_BYTES)


def _truncate(name: str, limit: int) -> str:
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = limit - len(suffix.encode())
    return stem.encode()[:budget].decode(errors="ignore").rstrip() + suffix


def check_mime(mime: str) -> None:
    if mime.split(";")[0].strip().lower() != "application/pdf":
        raise ApiError(
            415, "unsupported_media_type", f"only application/pdf is accepted, not {mime!r}"
        )


def check_size(size: int, max_mb: float) -> None:
    if size > max_mb * 1024 * 1024:
        raise ApiError(413, "file_too_large", f"the file is larger than {max_mb:g} MB")


def validate_pdf(data: bytes, max_expanded_bytes: int = DEFAULT_MAX_EXPANDED) -> PdfInfo:
    """PdfInfo, or ApiError 422: not_pdf, pdf_bomb, pdf_encrypted, pdf_corrupt, pdf_empty."""
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise ApiError(422, "not_pdf", "the file is not a PDF (no %PDF- header)")
    try:
        check_expansion(data, max_expanded_bytes)
    except PdfBomb as exc:
        raise ApiError(422, "pdf_bomb", str(exc)) from exc
    with _PDFIUM_LOCK:
        # pdfium's last error is global and not reset by a load: set it to FILE (a memory
        # load never reports that) so a load that fails without a reason of its own -- pdfium
        # does this for an empty page tree -- is told apart from stale codes.
        pdfium_c.FPDF_LoadDocument(b"/nonexistent/accessa-probe.pdf", None)
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
                raise ApiError(422, "pdf_encrypted", "the PDF needs a password to open") from exc
            if exc.err_code == pdfium_c.FPDF_ERR_FILE:
                raise ApiError(422, "pdf_empty", "the PDF has no pages") from exc
            raise ApiError(422, "pdf_corrupt", f"the PDF cannot be opened: {exc}") from exc
        try:
            # An encrypted PDF that opened needed no password: an owner password only sets
            # permissions (print, copy), and its text reads like any other, so it is accepted.
            pages = len(pdf)
            if pages < 1:
                raise ApiError(422, "pdf_empty", "the PDF has no pages")
            try:
                pdf[0].close()
            except pdfium.PdfiumError as exc:
                raise ApiError(422, "pdf_corrupt", f"the first page cannot be read: {exc}") from exc
        finally:
            pdf.close()
    return PdfInfo(pages=pages)
