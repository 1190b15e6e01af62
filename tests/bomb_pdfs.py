"""One-page PDFs whose content stream inflates to many MB from a small file, in the variants
that slipped past the first bomb guard (issue 13), and the plain one it caught."""

from __future__ import annotations

import binascii
import zlib
from functools import cache

from mocks.policy_pdf import raw_pdf

MB = 1_048_576
TEXT = b"BT /F1 12 Tf 72 700 Td (Hostile) Tj ET"


@cache
def deflated_text(inflated_mb: int) -> bytes:
    """zlib data of TEXT followed by `inflated_mb` MB of spaces (~1 KB a MB)."""
    deflate = zlib.compressobj(9)
    spaces = b" " * MB
    body = b"".join(deflate.compress(spaces) for _ in range(inflated_mb))
    return deflate.compress(TEXT) + body + deflate.flush()


def _one_page(stream_dict: bytes, data: bytes) -> bytes:
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(data), stream_dict, data),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    )


def plain(inflated_mb: int) -> bytes:
    return _one_page(b"/Filter /FlateDecode", deflated_text(inflated_mb))


def hex_then_flate(inflated_mb: int) -> bytes:
    """The guard used to inflate the hex text, fail, and count nothing."""
    data = binascii.hexlify(deflated_text(inflated_mb)) + b">"
    return _one_page(b"/Filter [/ASCIIHexDecode /FlateDecode]", data)


def content_marked_image(inflated_mb: int) -> bytes:
    """Page contents whose dictionary also says it is an image: pdfium parses it as content."""
    return _one_page(b"/Filter /FlateDecode /Subtype /Image", deflated_text(inflated_mb))


def long_dictionary(inflated_mb: int) -> bytes:
    """/Filter first, then more than the old 2048-byte look-back of dictionary."""
    padding = b"/Padding [" + b"0 " * 4000 + b"] /Note (" + b"x" * 4000 + b")"
    return _one_page(b"/Filter /FlateDecode " + padding, deflated_text(inflated_mb))


def escaped_filter_name(inflated_mb: int) -> bytes:
    """`/#46lateDecode` is `/FlateDecode` once the name is decoded."""
    return _one_page(b"/Filter /#46lateDecode", deflated_text(inflated_mb))


BYPASSES = {
    "hex_then_flate": hex_then_flate,
    "content_marked_image": content_marked_image,
    "long_dictionary": long_dictionary,
    "escaped_filter_name": escaped_filter_name,
}
