"""The decompression-bomb guard: bombs are refused before pdfium inflates them; real PDFs
pass at their true inflated size."""

from __future__ import annotations

import base64
import binascii
import zlib

import pytest

from accessa.errors import PermanentError
from accessa.pdf.bombs import PdfBomb, check_expansion
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf, raw_pdf
from tests import bomb_pdfs
from tests.utils import CORPUS

MB = 1_048_576


def flate_pdf(inflated: bytes, *filters: bytes) -> bytes:
    """A one-page PDF whose content stream is `inflated`, Flate-compressed."""
    data = zlib.compress(inflated, 9)
    names = b" ".join(filters) or b"/FlateDecode"
    stream = b"<< /Length %d /Filter %s >>\nstream\n%s\nendstream" % (len(data), names, data)
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        stream,
    )


def test_a_stream_inflating_past_the_budget_is_a_bomb() -> None:
    bomb = flate_pdf(b"0" * (64 * MB))
    assert len(bomb) < 100_000
    with pytest.raises(PdfBomb, match="more than 16 MB"):
        check_expansion(bomb, 16 * MB)


def test_many_small_streams_add_up_against_one_budget() -> None:
    streams = [
        b"<< /Filter /FlateDecode >>\nstream\n%s\nendstream" % zlib.compress(b"1" * MB)
        for _ in range(20)
    ]
    assert check_expansion(raw_pdf(*streams), 32 * MB) == 20 * MB
    with pytest.raises(PdfBomb):
        check_expansion(raw_pdf(*streams), 16 * MB)


def test_the_abbreviated_filter_name_and_filter_arrays_are_checked() -> None:
    with pytest.raises(PdfBomb):
        check_expansion(flate_pdf(b"0" * (8 * MB), b"/Fl"), MB)
    with pytest.raises(PdfBomb):
        check_expansion(flate_pdf(b"0" * (8 * MB), b"[/FlateDecode /DCTDecode]"), MB)


def test_broken_and_unfiltered_streams_are_left_to_pdfium() -> None:
    truncated = flate_pdf(b"abc" * 1000)[:-200]
    assert check_expansion(truncated, MB) >= 0
    plain = raw_pdf(b"<< /Length 5 >>\nstream\nhello\nendstream")
    assert check_expansion(plain, 1) == 0


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.pdf")))
def test_real_pdfs_are_not_bombs(name: str) -> None:
    assert check_expansion((CORPUS / name).read_bytes()) < 256 * MB


def test_the_parser_refuses_a_bomb_with_its_code() -> None:
    with pytest.raises(PermanentError) as raised:
        parse_pdf(flate_pdf(b"0" * (8 * MB)), max_expanded_bytes=MB)
    assert raised.value.code == "pdf_bomb"
    assert parse_pdf(make_policy_pdf(seed=5, pages=2), max_expanded_bytes=MB).pages == 2


@pytest.mark.parametrize("variant", sorted(bomb_pdfs.BYPASSES))
def test_each_issue_13_bypass_is_a_bomb(variant: str) -> None:
    bomb = bomb_pdfs.BYPASSES[variant](64)
    assert len(bomb) < 200_000
    with pytest.raises(PdfBomb):
        check_expansion(bomb, 16 * MB)


def test_every_decoding_filter_is_followed_in_a_chain() -> None:
    text = b"BT (x) Tj ET " * 100_000
    flate = zlib.compress(text)
    lzw_text = _lzw(text[:50_000])
    chains = {
        b"[/AHx /Fl]": binascii.hexlify(flate) + b">",
        b"[/A85 /Fl]": base64.a85encode(flate) + b"~>",
        b"[/RL /Fl]": _run_length(flate),
        b"/LZW": lzw_text,
    }
    for filters, data in chains.items():
        stream = b"<< /Length %d /Filter %s >>\nstream\n%s\nendstream" % (len(data), filters, data)
        expanded = check_expansion(raw_pdf(stream), 16 * MB)
        assert expanded >= (50_000 if filters == b"/LZW" else len(text)), filters


def test_a_real_image_is_not_counted_but_one_used_as_page_contents_is() -> None:
    image = b"<< /Type /XObject /Subtype /Image /Width 4096 /Height 4096 /BitsPerComponent 8"
    image += b" /ColorSpace /DeviceGray /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
    data = zlib.compress(b"\0" * (16 * MB))
    page = b"<< /Type /Page /Parent 2 0 R /Contents %s /Resources << /XObject << /I 4 0 R >> >> >>"
    catalog, pages = b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] >>"
    drawn = raw_pdf(
        catalog,
        pages,
        page % b"5 0 R",
        image % (len(data), data),
        b"<< /Length 10 >>\nstream\n/I Do     \nendstream",
    )
    assert check_expansion(drawn, MB) == 0
    as_contents = raw_pdf(
        catalog,
        pages,
        page % b"[5 0 R 4 0 R]",
        image % (len(data), data),
        b"<< /Length 10 >>\nstream\n/I Do     \nendstream",
    )
    with pytest.raises(PdfBomb):
        check_expansion(as_contents, MB)


def test_a_length_that_hides_endstream_inside_the_data_is_honoured() -> None:
    data = zlib.compress(b"0" * (8 * MB))
    data = data[:100] + b"\nendstream\n" + data[100:]  # pdfium reads /Length bytes
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(data), data)
    assert check_expansion(raw_pdf(stream), 64 * MB) >= 0  # corrupt zlib: counted to the error


def _lzw(data: bytes) -> bytes:
    """LZW with clear codes every 256 entries (9-bit codes only): enough to round-trip."""
    codes, table, word = [256], {bytes([i]): i for i in range(256)}, b""
    for byte in data:
        candidate = word + bytes([byte])
        if candidate in table:
            word = candidate
            continue
        codes.append(table[word])
        table[candidate] = len(table) + 2
        word = bytes([byte])
        if len(table) + 2 >= 511:
            codes.append(256)
            table = {bytes([i]): i for i in range(256)}
    codes += [table[word], 257]
    bits = "".join(format(code, "09b") for code in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _run_length(data: bytes) -> bytes:
    out = bytearray()
    for start in range(0, len(data), 128):
        piece = data[start : start + 128]
        out += bytes([len(piece) - 1]) + piece
    return bytes(out + b"\x80")
