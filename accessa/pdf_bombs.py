"""Decompression-bomb guard for PDFs, run before pdfium sees the bytes.

pdfium inflates a page's Flate streams whole and has no size limit: a 1 MB upload holding a
1 GB stream of zeros costs ~2 GB of memory and seconds of CPU just to open its first page.
This walks the raw file, inflates every Flate stream but images (pdfium never decodes those to
read text) under a running budget and stops at the first byte over it. Hand-written because
no PDF library on PyPI bounds inflation this way.
"""

from __future__ import annotations

import re
import zlib

_FLATE = re.compile(rb"/(FlateDecode|Fl)\b")
_IMAGE = re.compile(rb"/Subtype\s*/Image\b")  # text extraction never decodes image data
_DICT_LOOKBACK = 2048  # a stream's dictionary ends right before the `stream` keyword
_CHUNK = 1 << 20
DEFAULT_MAX_EXPANDED = 256 * 1_048_576


class PdfBomb(ValueError):
    """The PDF's compressed streams expand past the allowed budget."""


def check_expansion(data: bytes, max_expanded_bytes: int = DEFAULT_MAX_EXPANDED) -> int:
    """Total bytes the PDF's Flate streams inflate to; PdfBomb past `max_expanded_bytes`.

    Streams that are not valid zlib are skipped: telling broken files apart is pdfium's job.
    """
    total = 0
    pos = 0
    view = memoryview(data)
    while (found := data.find(b"stream", pos)) >= 0:
        pos = found + 6
        if data[found - 3 : found] == b"end" or data[pos : pos + 1] not in (b"\r", b"\n"):
            continue  # `endstream`, or the word inside some other token
        start = pos + (2 if data[pos : pos + 2] == b"\r\n" else 1)
        end = data.find(b"endstream", start)
        end = len(data) if end < 0 else end
        pos = end + 9
        head = data[max(0, found - _DICT_LOOKBACK) : found]
        if b"endstream" in head:
            head = head[head.rfind(b"endstream") :]
        if not _FLATE.search(head) or _IMAGE.search(head):
            continue
        total += _inflated_size(view[start:end], max_expanded_bytes - total)
        if total > max_expanded_bytes:
            mb = max_expanded_bytes / 1_048_576
            raise PdfBomb(f"the PDF's compressed content expands to more than {mb:g} MB")
    return total


def _inflated_size(raw: bytes | memoryview, budget: int) -> int:
    """Inflated size of one stream, counting at most `budget + 1` bytes."""
    inflater = zlib.decompressobj()
    size = 0
    pending = raw
    try:
        while pending and not inflater.eof and size <= budget:
            out = inflater.decompress(pending, _CHUNK)
            if not out and inflater.unconsumed_tail == pending:
                break  # no progress: truncated or trailing bytes
            size += len(out)
            pending = inflater.unconsumed_tail
    except zlib.error:
        pass
    return size
