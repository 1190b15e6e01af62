"""Decompression-bomb guard for PDFs, run before pdfium sees the bytes.

pdfium inflates a page's Flate streams whole and has no size limit: a 1 MB upload holding a
1 GB stream of zeros costs ~2 GB of memory and seconds of CPU just to open its first page.
This walks the raw file, inflates every Flate stream under a running budget and stops at the
first byte over it. Hand-written because no PDF library on PyPI bounds inflation this way.
"""

from __future__ import annotations

import re
import zlib

_STREAM = re.compile(rb"(?<!end)stream\r?\n")
_FLATE = re.compile(rb"/(FlateDecode|Fl)\b")
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
    while (match := _STREAM.search(data, pos)) is not None:
        start = match.end()
        end = data.find(b"endstream", start)
        end = len(data) if end < 0 else end
        pos = end + len(b"endstream")
        head = data[max(0, match.start() - _DICT_LOOKBACK) : match.start()]
        if b"endstream" in head:
            head = head[head.rfind(b"endstream") :]
        if not _FLATE.search(head):
            continue
        total += _inflated_size(data[start:end], max_expanded_bytes - total)
        if total > max_expanded_bytes:
            mb = max_expanded_bytes / 1_048_576
            raise PdfBomb(f"the PDF's compressed content expands to more than {mb:g} MB")
    return total


def _inflated_size(raw: bytes, budget: int) -> int:
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
