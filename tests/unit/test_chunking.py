"""Chunker markdown-simple@1: sections, budget, overlap, tables, pages, stable ids."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import subprocess
import sys
import uuid

import pytest

from accessa.text import normalize_markdown
from accessa.tokens import MAX_EMBED_TOKENS, count_tokens
from consumers.chunker.chunking import CHUNK_NAMESPACE, Chunk, chunk_markdown
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf, policy_phrase

DOC = uuid.UUID("00000000-0000-0000-0000-0000000000d1")
WORDS = [
    "the",
    "insured",
    "must",
    "notify",
    "us",
    "promptly",
    "of",
    "any",
    "loss",
    "under",
    "coverage",
    "limits",
    "deductible",
    "premium",
    "policy",
    "period",
    "endorsement",
    "exclusion",
    "dwelling",
    "liability",
]


def _prose(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return ". ".join(part.capitalize() for part in text.split(" the ")) + "."


def _document(pages: int = 20, seed: int = 0) -> str:
    rng = random.Random(seed)
    parts = ["# Policy"]
    for page in range(1, pages + 1):
        parts.append(f"<!-- page {page} -->")
        if page % 5 == 1:
            parts.append(f"## Part {page // 5 + 1}")
        parts += [_prose(rng, rng.randint(40, 160)) for _ in range(3)]
    return "\n\n".join(parts) + "\n"


def _table(rows: int) -> str:
    lines = ["| Coverage | Limit | Deductible |", "| --- | --- | --- |"]
    lines += [f"| Coverage {i} | ${i * 1000:,} | ${i * 10:,} |" for i in range(rows)]
    return "\n".join(lines)


def test_empty_or_whitespace_or_marker_only_markdown_gives_no_chunks():
    for markdown in ["", "   \n\n\t\n", "<!-- page 1 -->\n\n<!-- page 2 -->\n"]:
        assert chunk_markdown(markdown, document_id=DOC) == []


def test_same_input_gives_the_same_chunks_and_ids():
    markdown = _document()
    assert chunk_markdown(markdown, document_id=DOC) == chunk_markdown(markdown, document_id=DOC)


def test_ids_are_uuid5_of_document_version_ordinal_and_content_hash():
    for chunk in chunk_markdown(_document(), document_id=DOC):
        digest = hashlib.sha256(chunk.content.encode()).hexdigest()
        assert chunk.content_sha256 == digest
        name = f"{DOC}:markdown-simple@1:{chunk.ordinal}:{digest}"
        assert chunk.chunk_id == uuid.uuid5(CHUNK_NAMESPACE, name)


def test_ids_are_the_same_in_another_process():
    code = (
        "import uuid; from tests.unit.test_chunking import _document, DOC;"
        "from consumers.chunker.chunking import chunk_markdown;"
        "print(*[c.chunk_id for c in chunk_markdown(_document(), document_id=DOC)])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert other == [str(c.chunk_id) for c in chunk_markdown(_document(), document_id=DOC)]


def test_ids_differ_between_documents_and_versions():
    markdown = _document(pages=3)
    ids = {c.chunk_id for c in chunk_markdown(markdown, document_id=DOC)}
    other_doc = {c.chunk_id for c in chunk_markdown(markdown, document_id=uuid.uuid4())}
    other_version = {
        c.chunk_id for c in chunk_markdown(markdown, document_id=DOC, version="markdown-simple@2")
    }
    assert ids.isdisjoint(other_doc)
    assert ids.isdisjoint(other_version)


def test_ordinals_run_from_zero_without_gaps():
    chunks = chunk_markdown(_document(), document_id=DOC)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_every_chunk_respects_the_budget_and_reports_its_exact_token_count():
    chunks = chunk_markdown(_document(), document_id=DOC, target_tokens=128, overlap_tokens=16)
    assert len(chunks) > 10
    for chunk in chunks:
        assert chunk.token_count == count_tokens(chunk.content)
        assert chunk.token_count <= 128


def test_headings_give_each_chunk_its_heading_path():
    markdown = (
        "# Policy\n\nIntro.\n\n## Coverages\n\n### Dwelling\n\nCovers the house.\n\n"
        "## Exclusions\n\nFlood is excluded.\n"
    )
    chunks = chunk_markdown(markdown, document_id=DOC)
    assert [c.heading_path for c in chunks] == [
        ["Policy"],
        ["Policy", "Coverages", "Dwelling"],
        ["Policy", "Exclusions"],
    ]


def test_a_heading_without_text_joins_the_next_section():
    chunks = chunk_markdown("## Coverages\n\n### Dwelling\n\nCovers the house.\n", document_id=DOC)
    assert len(chunks) == 1
    assert chunks[0].content == "## Coverages\n\n### Dwelling\n\nCovers the house."


def test_sections_are_never_packed_together():
    chunks = chunk_markdown("# A\n\nalpha\n\n# B\n\nbeta\n", document_id=DOC)
    assert [c.content for c in chunks] == ["# A\n\nalpha", "# B\n\nbeta"]


def test_page_markers_give_page_ranges_and_are_not_content():
    markdown = (
        "<!-- page 1 -->\n\n# T\n\nOne.\n\n<!-- page 2 -->\n\nTwo.\n\n<!-- page 3 -->\n\n"
        "## Next\n\nThree.\n"
    )
    chunks = chunk_markdown(markdown, document_id=DOC)
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 2), (3, 3)]
    assert all("<!--" not in c.content for c in chunks)


def test_text_before_any_page_marker_is_on_page_one():
    (chunk,) = chunk_markdown("Just text.\n", document_id=DOC)
    assert (chunk.page_start, chunk.page_end) == (1, 1)


def test_long_section_pages_follow_the_text():
    chunks = chunk_markdown(_document(pages=12), document_id=DOC, target_tokens=200)
    starts = [c.page_start for c in chunks]
    assert starts == sorted(starts)
    assert chunks[-1].page_end == 12
    assert all(c.page_start <= c.page_end for c in chunks)


def test_split_chunks_overlap_by_the_tail_of_the_previous_chunk():
    rng = random.Random(3)
    paragraph = _prose(rng, 2_000)
    chunks = chunk_markdown(paragraph, document_id=DOC, target_tokens=200, overlap_tokens=40)
    assert len(chunks) > 3
    for previous, chunk in itertools.pairwise(chunks):
        prefixes = (chunk.content[:k] for k in range(1, 400))
        shared = max((p for p in prefixes if previous.content.endswith(p)), key=len, default="")
        assert 20 <= count_tokens(shared) <= 40
        assert shared[0].isalnum()  # it starts at a word


def test_no_overlap_when_overlap_is_zero():
    rng = random.Random(3)
    paragraph = _prose(rng, 2_000)
    chunks = chunk_markdown(paragraph, document_id=DOC, target_tokens=200, overlap_tokens=0)
    assert " ".join(c.content for c in chunks) == paragraph


def test_a_long_list_is_split_between_items_and_keeps_one_item_per_line():
    items = [
        f"- Exclusion {i}: loss caused by {WORDS[i % len(WORDS)]} is not covered."
        for i in range(200)
    ]
    chunks = chunk_markdown("\n".join(items), document_id=DOC, target_tokens=100, overlap_tokens=0)
    assert len(chunks) > 5
    assert [line for c in chunks for line in c.content.split("\n")] == items


def test_a_table_within_budget_is_kept_whole_in_one_chunk():
    rng = random.Random(5)
    table = _table(12)
    markdown = f"# Schedule\n\n{_prose(rng, 150)}\n\n{table}\n\n{_prose(rng, 150)}\n"
    chunks = chunk_markdown(markdown, document_id=DOC, target_tokens=256, overlap_tokens=32)
    assert len(chunks) > 1
    assert sum(table in c.content for c in chunks) == 1
    assert all("| Coverage 3 |" not in c.content or table in c.content for c in chunks)


def test_a_table_over_budget_is_split_on_rows_with_its_header_repeated():
    table = _table(300)
    chunks = chunk_markdown(f"## Schedule\n\n{table}\n", document_id=DOC, target_tokens=128)
    assert len(chunks) > 5
    rows = []
    for chunk in chunks:
        lines = chunk.content.split("\n")
        lines = lines[2:] if chunk.ordinal == 0 else lines  # "## Schedule", blank line
        assert lines[:2] == ["| Coverage | Limit | Deductible |", "| --- | --- | --- |"]
        assert all(line.startswith("| Coverage ") for line in lines[2:])
        rows += lines[2:]
        assert chunk.token_count <= 128
    assert rows == table.split("\n")[2:]


def test_a_code_block_over_budget_is_split_on_lines_and_refenced():
    code = "\n".join(f"value_{i} = compute({i})" for i in range(400))
    chunks = chunk_markdown(f"```python\n{code}\n```\n", document_id=DOC, target_tokens=100)
    assert len(chunks) > 5
    body = []
    for chunk in chunks:
        lines = chunk.content.split("\n")
        assert lines[0] == "```python"
        assert lines[-1] == "```"
        body += lines[1:-1]
    assert body == code.split("\n")


def test_no_chunk_exceeds_the_embedding_limit_even_with_a_huge_target():
    rng = random.Random(9)
    markdown = "\n".join(_prose(rng, 200) for _ in range(120)) + "\n\n" + "x" * 120_000
    chunks = chunk_markdown(markdown, document_id=DOC, target_tokens=100_000)
    assert max(c.token_count for c in chunks) <= MAX_EMBED_TOKENS
    assert sum(c.token_count for c in chunks) >= count_tokens(markdown) * 0.9


def test_one_unbreakable_word_is_cut_to_the_budget():
    chunks = chunk_markdown("a" * 50_000, document_id=DOC, target_tokens=512, overlap_tokens=0)
    assert "".join(c.content for c in chunks) == "a" * 50_000
    assert all(c.token_count <= 512 for c in chunks)


def test_chunks_are_immutable():
    (chunk,) = chunk_markdown("Text.\n", document_id=DOC)
    assert isinstance(chunk, Chunk)
    with pytest.raises(dataclasses.FrozenInstanceError):
        chunk.content = "changed"  # type: ignore[misc]


def test_a_1200_page_policy_gives_over_a_thousand_chunks_none_over_the_limit():
    # Its speed is measured by bench/bench_hotpaths.py (`make bench`), not asserted here.
    chunks = chunk_markdown(_document(pages=1200, seed=1), document_id=DOC)
    assert len(chunks) >= 1000
    assert all(c.token_count <= MAX_EMBED_TOKENS for c in chunks)


def test_a_parsed_policy_chunks_along_its_sections_with_tables_whole():
    markdown = normalize_markdown(parse_pdf(make_policy_pdf(seed=21, pages=8)).markdown)
    chunks = chunk_markdown(markdown, document_id=DOC)
    schedule = next(c for c in chunks if "| Coverage | Limit of Liability |" in c.content)
    assert schedule.heading_path == [
        "Homeowners Insurance Policy",
        "Section I - Coverages",
        "Schedule of Coverages",
    ]
    assert (schedule.page_start, schedule.page_end) == (2, 2)
    assert schedule.content.count("| F - Medical Payments |") == 1
    phrase = next(c for c in chunks if policy_phrase(21) in c.content)
    assert phrase.page_start == 1
    assert chunks[-1].page_end == 8
