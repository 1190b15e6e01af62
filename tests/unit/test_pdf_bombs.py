"""The decompression-bomb guard: bombs are refused before pdfium inflates them; real PDFs
pass at their true inflated size."""

from __future__ import annotations

import zlib

import pytest

from accessa.errors import PermanentError
from accessa.pdf_bombs import PdfBomb, check_expansion
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf, raw_pdf
from tests.utils import CORPUS

MB = 1_048_576


def flate_pdf(inflated: bytes, *filters: bytes) -> bytes:
    """A one-page PDF whose content stream is `inflated`, Flate-compressed."""
    data = zlib.compress(inflated, 9)
    names = b" ".join(filters) or b"/FlateDecode"
    stream = b"<< /Length %d /Filter %s >>\nstream\n%s\nendstream" % (len(data), names, data)
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>", stream,
    )  # fmt: skip


def test_a_stream_inflating_past_the_budget_is_a_bomb() -> None:
    bomb = flate_pdf(b"0" * (64 * MB))
    assert len(bomb) < 100_000
    with pytest.raises(PdfBomb, match="more than 16 MB"):
        check_expansion(bomb, 16 * MB)


def test_many_small_streams_add_up_against_one_budget() -> None:
    streams = [b"<< /Filter /FlateDecode >>\nstream\n%s\nendstream" % zlib.compress(b"1" * MB)
               for _ in range(20)]  # fmt: skip
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
