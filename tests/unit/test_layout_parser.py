"""Layout on generated PDFs: borderless grids (as tables, or `label: value` blocks when too
sparse), running headers/footers, watermarks, bold sentences inside paragraphs, two columns
(issue 12)."""

from __future__ import annotations

import re

import pytest

from consumers.parser import layout
from consumers.parser.local import parse_pdf
from mocks.layout_pdf import (
    BOLD_SENTENCE,
    GRID_HEADER,
    GRID_ROWS,
    HEADING,
    MORE_ROWS,
    SCHEDULE_HEADER,
    SCHEDULE_ROWS,
    UIN_LINE,
    WATERMARK,
    make_layout_pdf,
    make_schedule_pdf,
)


@pytest.fixture(scope="module")
def markdown() -> str:
    return parse_pdf(make_layout_pdf(pages=4)).markdown


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def test_a_borderless_grid_with_multi_line_cells_becomes_a_markdown_table(markdown):
    expected = "\n".join([_row(GRID_HEADER), "| --- | --- | --- |", *map(_row, GRID_ROWS)])
    assert expected in markdown
    for question, *_ in GRID_ROWS + MORE_ROWS:
        assert not re.search(rf"^#+ .*{re.escape(question[:15])}", markdown, re.MULTILINE)


def test_a_grid_on_a_later_page_keeps_its_header_row(markdown):
    expected = "\n".join([_row(GRID_HEADER), "| --- | --- | --- |", *map(_row, MORE_ROWS)])
    assert markdown.count(expected) == 2  # pages 3 and 4


def test_running_headers_and_footers_are_kept_at_most_once(markdown):
    assert markdown.count(UIN_LINE) == 1  # kept once, without its page number
    assert "/Page" not in markdown
    assert not re.search(r"Page \d+ of \d+", markdown)


def test_a_letter_spaced_watermark_is_not_a_heading(markdown):
    assert WATERMARK not in markdown


def test_a_bold_sentence_inside_a_paragraph_is_not_a_heading_but_a_bold_line_is(markdown):
    assert re.search(rf"^#+ {HEADING}$", markdown, re.MULTILINE)
    paragraph = next(p for p in markdown.split("\n\n") if "You must notify us" in p)
    assert not paragraph.startswith("#")
    assert BOLD_SENTENCE in paragraph
    assert "# within" not in markdown


def test_two_columns_are_read_left_then_right_into_paragraphs(markdown):
    page = markdown.split("<!-- page 2 -->", 1)[1].split("<!-- page 3 -->", 1)[0]
    blocks = [b for b in page.split("\n\n") if b.strip()]
    assert blocks[0] == "## Coverage Abroad"
    assert blocks[1].startswith("Left column.") and "Right column" not in blocks[1]
    assert blocks[2].startswith("Right column.") and "Left column" not in blocks[2]


def test_a_grid_whose_rows_fill_different_columns_becomes_label_value_blocks():
    markdown = parse_pdf(make_schedule_pdf()).markdown
    assert "| --- |" not in markdown
    blocks = markdown.split("\n\n")
    for row in SCHEDULE_ROWS:
        expected = "\n".join(
            f"{label}: {cell}" for label, cell in zip(SCHEDULE_HEADER, row, strict=True) if cell
        )
        assert expected in blocks
    assert "Limits apply per insured person" in markdown


def test_only_a_sparse_grid_is_too_irregular_for_a_table():
    full = [["Benefit", "Limit"], ["Dental", "$100"], ["Optical", "$200"]]
    sparse = [["Benefit", "Limit", "Excess"], ["Dental", "", "$50"], ["Optical", "$200", ""]]
    assert not layout.irregular(full)
    assert layout.irregular(sparse)
    assert (
        layout.label_value(sparse)
        == "Benefit: Dental\nExcess: $50\n\nBenefit: Optical\nLimit: $200"
    )
    headless = [["18", "", "1.6 Paths"], ["", "V", "[n"]]  # a page header taken in
    assert layout.label_value(headless) == "18; 1.6 Paths\nV; [n"
    unused = [["Cover", "Limit", "Notes"], ["Dental", "", ""], ["Optical", "$200", ""]]
    assert layout.label_value(unused) == "Cover; Limit; Notes\nDental\nOptical; $200"
