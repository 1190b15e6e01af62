"""Chunker markdown-simple@2: small sections merged under their parent, correct heading
paths, a contextual header in the embedding input only, tables split with their header."""

from __future__ import annotations

import hashlib
import uuid

from accessa.tokens import count_tokens
from consumers.chunker.chunking import chunk_markdown
from consumers.chunker.contextual import embed_metadata
from consumers.parser.local import parse_pdf
from mocks.layout_pdf import GRID_HEADER, UIN_LINE, make_layout_pdf

DOC = uuid.UUID("00000000-0000-0000-0000-0000000000d2")
V2 = "markdown-simple@2"

PLAN = """<!-- page 1 -->

# Gold Dental Plan

## Benefits

### Cleanings

What you'll get: two cleanings a year.

### Whitening

What you'll get: up to $300

## Contacting us

Call 0800 000 000 any day.

<!-- page 2 -->

# Your Policy

### Claims

Send the claim form within 30 days.
"""


def _chunks(markdown: str, **kw) -> list:
    return chunk_markdown(markdown, document_id=DOC, version=V2, **kw)


def test_same_input_same_ids_and_v1_and_v2_ids_differ():
    first, again = _chunks(PLAN), _chunks(PLAN)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    v1 = chunk_markdown(PLAN, document_id=DOC, version="markdown-simple@1")
    assert not {c.chunk_id for c in first} & {c.chunk_id for c in v1}


def test_a_one_line_section_is_merged_with_its_siblings_under_their_parent():
    chunk = next(c for c in _chunks(PLAN) if "up to $300" in c.content)
    assert "### Cleanings" in chunk.content and "### Whitening" in chunk.content
    # "Contacting us" is a sibling of "Benefits" under the title: merged too, path the title's.
    assert "## Contacting us" in chunk.content
    assert chunk.heading_path == ["Gold Dental Plan"]
    tight = next(c for c in _chunks(PLAN, target_tokens=56) if "up to $300" in c.content)
    assert "### Cleanings" in tight.content and "Contacting us" not in tight.content
    assert tight.heading_path == ["Gold Dental Plan", "Benefits"]
    v1 = chunk_markdown(PLAN, document_id=DOC, version="markdown-simple@1")
    assert [c.heading_path for c in v1 if "up to $300" in c.content] == [
        ["Gold Dental Plan", "Benefits", "Whitening"]
    ]


def test_sections_under_another_parent_or_over_budget_are_not_merged():
    chunks = _chunks(PLAN)
    claims = next(c for c in chunks if "claim form" in c.content)
    assert "Call 0800" not in claims.content  # another top-level heading
    assert claims.heading_path == ["Your Policy", "Claims"]
    long = PLAN.replace("two cleanings a year.", "two cleanings a year. " * 60)
    small = _chunks(long, target_tokens=128, overlap_tokens=0)
    assert not any("up to $300" in c.content and "two cleanings" in c.content for c in small)


def test_a_heading_resets_the_deeper_levels_of_the_path():
    markdown = (
        "# Welcome TO STATE\n\n## Contacting us\n\nCall us.\n\n" + "word " * 600 + "\n\n"
        "# Your car\n\n### Accidents\n\nTell us at once.\n\n" + "more " * 600 + "\n"
    )
    for version in ("markdown-simple@1", V2):
        chunks = chunk_markdown(markdown, document_id=DOC, version=version)
        accidents = [c for c in chunks if "Tell us at once" in c.content]
        assert [c.heading_path for c in accidents] == [["Your car", "Accidents"]]
        assert all("Contacting us" not in c.heading_path for c in chunks if "more" in c.content)


def test_the_embedding_input_has_title_and_path_and_the_text_stays_clean():
    for chunk in _chunks(PLAN):
        assert not chunk.content.startswith("Document:")
        assert chunk.embed_header.startswith("Document: Gold Dental Plan\n")
        if chunk.heading_path not in ([], ["Gold Dental Plan"]):
            assert f"Section: {' > '.join(chunk.heading_path)}\n" in chunk.embed_header
        text = chunk.embed_header + chunk.content
        assert chunk.embed_sha256 == hashlib.sha256(text.encode()).hexdigest()
        assert chunk.token_count == count_tokens(text)
        assert embed_metadata(chunk) == {
            "embed_header": chunk.embed_header,
            "embed_sha256": chunk.embed_sha256,
        }
    v1 = chunk_markdown(PLAN, document_id=DOC, version="markdown-simple@1")
    assert all(embed_metadata(c) == {} for c in v1)


def test_chunks_with_their_header_respect_the_budget_and_keep_page_ranges():
    markdown = parse_pdf(make_layout_pdf(pages=6)).markdown
    chunks = _chunks(markdown, target_tokens=128, overlap_tokens=16)
    assert max(c.token_count for c in chunks) <= 128
    assert all(1 <= c.page_start <= c.page_end <= 6 for c in chunks)
    assert sum(UIN_LINE in c.content for c in chunks) == 1


def test_a_split_table_repeats_its_header_row():
    rows = [f"| Service {i} | ${i * 10} | Covered after deductible |" for i in range(80)]
    table = "\n".join(["| Service | You pay | Why |", "| --- | --- | --- |", *rows])
    chunks = _chunks(f"# Costs\n\n{table}\n", target_tokens=128)
    assert len(chunks) > 2
    tables = [c.content.split("\n\n")[-1] for c in chunks]
    assert all(t.startswith("| Service | You pay | Why |\n| --- |") for t in tables)


def test_a_parsed_borderless_grid_is_chunked_as_a_table_with_its_header():
    markdown = parse_pdf(make_layout_pdf(pages=3)).markdown
    grid = [
        c
        for c in _chunks(markdown, target_tokens=96)
        if "| What is the overall" in c.content or "| Are there" in c.content
    ]
    assert grid
    assert all(c.content.startswith("| " + " | ".join(GRID_HEADER)) for c in grid)
