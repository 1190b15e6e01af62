"""accessa.text: one canonical form of markdown, and its hash."""

from __future__ import annotations

import hashlib
import unicodedata

from accessa.text import has_text, normalize_markdown, sha256_text


def test_decomposed_characters_become_nfc():
    decomposed = unicodedata.normalize("NFD", "café Zürich")
    assert decomposed != "café Zürich"
    assert normalize_markdown(decomposed) == "café Zürich\n"


def test_crlf_and_lone_cr_become_lf():
    assert normalize_markdown("a\r\nb\rc") == "a\nb\nc\n"


def test_trailing_spaces_and_tabs_are_stripped_from_every_line():
    assert normalize_markdown("a  \nb\t\nc \u00a0") == "a\nb\nc\n"


def test_runs_of_more_than_two_blank_lines_collapse_to_two():
    assert normalize_markdown("a\n\n\n\n\n\nb") == "a\n\n\nb\n"
    assert normalize_markdown("a\n\nb") == "a\n\nb\n"


def test_control_characters_are_removed_but_tabs_and_newlines_kept():
    assert normalize_markdown("a\x00b\x07c\x1b\x7f\td\x0ce\n") == "abc\tde\n"


def test_lone_surrogates_and_noncharacters_are_removed():
    assert normalize_markdown("a\ud800b\ufffec") == "abc\n"


def test_output_ends_with_exactly_one_newline():
    assert normalize_markdown("text") == "text\n"
    assert normalize_markdown("text\n\n\n") == "text\n"
    assert normalize_markdown("\n\ntext") == "text\n"


def test_whitespace_only_input_normalizes_to_empty():
    assert normalize_markdown("") == ""
    assert normalize_markdown(" \n\t\r\n\x00") == ""


def test_normalizing_twice_changes_nothing():
    text = "# Title \r\n\r\n\r\n\r\nBody\u0301 text\x00\n| a | b |\n"
    once = normalize_markdown(text)
    assert normalize_markdown(once) == once


def test_indentation_and_markdown_structure_are_kept():
    text = "# H\n\n- item\n  - nested\n\n| a | b |\n| --- | --- |\n\n```\n  code\n```\n"
    assert normalize_markdown(text) == text


def test_sha256_text_is_the_hex_digest_of_the_utf8_bytes():
    assert sha256_text("é\n") == hashlib.sha256("é\n".encode()).hexdigest()
    assert sha256_text("a") != sha256_text("b")


def test_page_markers_alone_are_not_text() -> None:
    assert not has_text("<!-- page 1 -->\n\n<!-- page 2 -->\n")
    assert not has_text("")
    assert has_text("<!-- page 1 -->\nCoverage A\n")
