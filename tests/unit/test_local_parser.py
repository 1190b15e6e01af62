"""consumers.parser.local: real PDFs to markdown, typed refusals, bounded work."""

from __future__ import annotations

import functools
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2
import pytest

from accessa.errors import PermanentError
from consumers.parser.local import PARSER_NAME, ParsedPdf, parse_pdf
from mocks.policy_pdf import make_policy_pdf, policy_phrase
from tests.utils import CORPUS

PAGE_MARKER = re.compile(r"^<!-- page (\d+) -->$", re.MULTILINE)

# file -> (minimum characters of markdown, text it must contain) or the error code it raises.
# Observed with pdfium 159 / pypdfium2 5.15; page counts are checked against files.json.
EXPECTED: dict[str, tuple[int, str] | str] = {
    "002-trivial-libre-office-writer.pdf": (500, "Lorem ipsum"),
    "GeoTopo-komprimiert.pdf": (100_000, "Topologische Räume"),
    "annotated_pdf.pdf": (30, "Some text."),
    "base64image.pdf": (50, "PDF Annotator"),
    "cmyk-image.pdf": "no_text_layer",
    "crazyones-pdfa.pdf": (800, "crazy"),
    "google-doc-document.pdf": (1_000, "| Capital | Jakarta | Berlin |"),
    "grayscale-image.pdf": "no_text_layer",
    "habibi-oneline-cmap.pdf": (20, "habibi"),
    "habibi-rotated.pdf": (80, "habibi"),
    "habibi.pdf": (20, "يبيب"),
    "imagemagick-ASCII85Decode.pdf": "no_text_layer",
    "imagemagick-CCITTFaxDecode.pdf": "no_text_layer",
    "imagemagick-images.pdf": (40, "Background"),
    "imagemagick-lzw.pdf": "no_text_layer",
    "inline-image.pdf": (4, "Test"),
    "libre-office-link.pdf": (30, "link"),
    "libreoffice-form.pdf": (100, "Name"),
    "libreoffice-writer-password.pdf": "pdf_encrypted",
    "minimal-document.pdf": (500, "Lorem ipsum"),
    "mistitled_outlines_example.pdf": (7_000, "Hello, here is some text"),
    "multicolumn.pdf": (7_000, "Two-Column Document"),
    "output_with_metadata_pymupdf.pdf": (13, "Hello, World!"),
    "pdfkit.pdf": (20, "Foo: bar"),
    "pdflatex-4-pages.pdf": (14_000, "Huardest gefburn"),
    "pdflatex-forms.pdf": (20, ""),
    "pdflatex-image.pdf": (600, "Lorem ipsum"),
    "pdflatex-outline.pdf": (7_000, "Hello, here is some text"),
    "reportlab-overlay.pdf": (60, ""),
    # The trailer has no /Root; MuPDF repairs that, pdfium refuses to open it.
    "unreadablemetadata.pdf": "pdf_corrupt",
    "with-attachment.pdf": (500, "Lorem ipsum"),
}


@functools.cache
def _parse_corpus(name: str) -> ParsedPdf:
    return parse_pdf((CORPUS / name).read_bytes())


def _declared_pages() -> dict[str, int]:
    described = json.loads((CORPUS / "files.json").read_text())["data"]
    return {Path(entry["path"]).name: entry["pages"] for entry in described}


def _minimal_pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _one_page_pdf(pages_dict: bytes, content: bytes) -> bytes:
    return _minimal_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            pages_dict,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def test_expectations_cover_every_corpus_pdf():
    assert sorted(EXPECTED) == sorted(p.name for p in CORPUS.glob("*.pdf"))


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if isinstance(e, tuple)))
def test_corpus_file_parses_with_its_pages_and_text(name):
    expected = EXPECTED[name]
    assert isinstance(expected, tuple)
    min_chars, must_contain = expected
    parsed = _parse_corpus(name)
    assert parsed.parser == PARSER_NAME
    assert parsed.pages == _declared_pages()[name]
    assert len(parsed.markdown) >= min_chars
    assert must_contain in parsed.markdown
    assert [int(n) for n in PAGE_MARKER.findall(parsed.markdown)] == list(
        range(1, parsed.pages + 1)
    )


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if isinstance(e, str)))
def test_corpus_file_is_refused_with_its_error_code(name):
    with pytest.raises(PermanentError) as raised:
        parse_pdf((CORPUS / name).read_bytes())
    assert raised.value.code == EXPECTED[name]


def test_image_only_refusal_says_ocr_is_off():
    with pytest.raises(PermanentError, match="OCR is off"):
        parse_pdf((CORPUS / "imagemagick-lzw.pdf").read_bytes())


def test_the_117_page_book_gets_headings_from_font_sizes():
    markdown = _parse_corpus("GeoTopo-komprimiert.pdf").markdown
    assert "# 1 Topologische Grundbegriffe" in markdown
    assert re.search(r"^#+ 1\.1 Topologische Räume$", markdown, re.MULTILINE)


def test_latex_section_headings_become_markdown_headings():
    markdown = _parse_corpus("pdflatex-outline.pdf").markdown
    assert re.findall(r"^# (\d Foo)$", markdown, re.MULTILINE) == ["1 Foo", "4 Foo", "7 Foo"]


def test_two_column_text_is_read_column_by_column_into_paragraphs():
    markdown = _parse_corpus("multicolumn.pdf").markdown
    assert "# Two-Column Document with Lorem Ipsum" in markdown
    assert "## Abstract" in markdown
    # A word hyphenated across a line break is rejoined.
    assert "Lorem ipsum dolor sit amet, consectetuer adipiscing elit." in markdown


@pytest.fixture(scope="module")
def policy_markdown() -> str:
    return parse_pdf(make_policy_pdf(seed=11, pages=8)).markdown


def test_policy_headings_keep_their_hierarchy(policy_markdown):
    assert "# Homeowners Insurance Policy" in policy_markdown
    assert "## Declarations" in policy_markdown
    assert "## Section I - Coverages" in policy_markdown
    assert "### Schedule of Coverages" in policy_markdown
    assert "## Section II - Exclusions" in policy_markdown


def test_policy_coverage_schedule_becomes_a_markdown_table(policy_markdown):
    header = "| Coverage | Limit of Liability | Deductible | Annual Premium |"
    assert header in policy_markdown
    table = policy_markdown.split(header, 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert table[0] == "| --- | --- | --- | --- |"
    assert len(table) == 7  # separator + coverages A-F
    assert table[1].startswith("| A - Dwelling | $")


def test_policy_declarations_become_a_key_value_table(policy_markdown):
    assert re.search(r"^\| Policy Number \| HO-11-\d{7} \|$", policy_markdown, re.MULTILINE)


def test_policy_lists_become_markdown_lists(policy_markdown):
    exclusions = policy_markdown.split("## Section II - Exclusions", 1)[1]
    assert re.findall(r"^(\d)\. ", exclusions, re.MULTILINE)[:8] == list("12345678")
    perils = policy_markdown.split("### Perils Insured Against", 1)[1].split("<!--", 1)[0]
    assert len(re.findall(r"^- [A-Z]", perils, re.MULTILINE)) == 5


def test_policy_phrase_survives_parsing(policy_markdown):
    assert policy_phrase(11) in policy_markdown


def test_garbage_bytes_are_pdf_corrupt():
    for data in [b"", b"hello world", b"%PDF-1.7\n" + b"\x00" * 1000]:
        with pytest.raises(PermanentError) as raised:
            parse_pdf(data)
        assert raised.value.code == "pdf_corrupt"


def test_truncated_pdf_is_pdf_corrupt():
    data = make_policy_pdf(seed=2, pages=3)
    with pytest.raises(PermanentError) as raised:
        parse_pdf(data[: len(data) // 2])
    assert raised.value.code == "pdf_corrupt"


def test_pdf_without_pages_is_pdf_no_pages():
    buffer = io.BytesIO()
    pypdfium2.PdfDocument.new().save(buffer)
    with pytest.raises(PermanentError) as raised:
        parse_pdf(buffer.getvalue())
    assert raised.value.code == "pdf_no_pages"


def test_error_codes_do_not_leak_from_one_call_into_the_next():
    buffer = io.BytesIO()
    pypdfium2.PdfDocument.new().save(buffer)
    encrypted = (CORPUS / "libreoffice-writer-password.pdf").read_bytes()
    for data, code in [
        (encrypted, "pdf_encrypted"),
        (buffer.getvalue(), "pdf_no_pages"),
        (b"junk", "pdf_corrupt"),
        (buffer.getvalue(), "pdf_no_pages"),
    ]:
        with pytest.raises(PermanentError) as raised:
            parse_pdf(data)
        assert raised.value.code == code


def test_more_pages_than_allowed_is_refused_before_reading_them():
    with pytest.raises(PermanentError) as raised:
        parse_pdf(make_policy_pdf(seed=3, pages=8), max_pages=5)
    assert raised.value.code == "pdf_too_many_pages"


def test_work_past_the_deadline_stops_with_a_typed_error():
    with pytest.raises(PermanentError) as raised:
        parse_pdf(make_policy_pdf(seed=3, pages=2), deadline_s=0)
    assert raised.value.code == "pdf_parse_timeout"


def test_a_huge_declared_page_count_does_not_make_work():
    data = _one_page_pdf(
        b"<< /Type /Pages /Kids [3 0 R] /Count 100000000 >>", b"BT /F1 12 Tf 72 700 Td (Hi) Tj ET"
    )
    parsed = parse_pdf(data)  # its time: bench/bench_hotpaths.py (`make bench`)
    assert parsed.pages == 1


def test_deeply_nested_content_parses():
    nested = b"[" * 200_000 + b"]" * 200_000
    data = _one_page_pdf(
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"BT /F1 12 Tf 72 700 Td (Deep) Tj ET " + nested,
    )
    assert "Deep" in parse_pdf(data).markdown  # its time: bench/bench_hotpaths.py


def test_a_page_tree_that_contains_itself_does_not_loop():
    data = _one_page_pdf(
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>", b"BT /F1 12 Tf 72 700 Td (Loop) Tj ET"
    )
    assert "Loop" in parse_pdf(data).markdown


def test_concurrent_calls_from_threads_give_the_sequential_results():
    files = [make_policy_pdf(seed=s, pages=4) for s in range(4)]
    files.append((CORPUS / "multicolumn.pdf").read_bytes())
    expected = [parse_pdf(data).markdown for data in files]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda data: parse_pdf(data).markdown, files * 3))
    assert results == expected * 3


def test_an_owner_password_only_pdf_is_parsed_and_a_user_password_pdf_refused():
    """Issue 12: permissions (print/copy) do not stop reading; a password to open does."""
    from tests.encrypted_pdfs import owner_locked, user_locked

    data = make_policy_pdf(seed=5, pages=2)
    parsed = parse_pdf(owner_locked(data))
    assert parsed.pages == 2 and policy_phrase(5) in parsed.markdown
    with pytest.raises(PermanentError) as raised:
        parse_pdf(user_locked(data))
    assert raised.value.code == "pdf_encrypted"
