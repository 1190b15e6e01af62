"""Markdown read into blocks (heading, paragraph, table, fenced code) and grouped into sections.

Each block notes its pages from the `<!-- page N -->` markers (pages before the first marker
count as page 1); a page the parser OCR'd is marked `<!-- page N ocr confidence=C -->`.
A heading starts a section; headings with no text of their own join the next section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_PAGE_MARKER = re.compile(
    r"^\s*<!--\s*page\s+(\d+)(?:\s+ocr\s+confidence=(\d+(?:\.\d+)?))?\s*-->\s*$", re.IGNORECASE
)
# Headings and table separators are read by code around a bounded regex: as one pattern
# each, adjacent runs of the same characters backtracked quadratically on a long line.
_HEADING_OPEN = re.compile(r"^ {0,3}(#{1,6})[ \t]+")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SEPARATOR_CELL = re.compile(r":?-{3,}:?")

Kind = Literal["heading", "text", "table", "code"]


@dataclass(slots=True)
class Piece:
    """A unit the packer never cuts: a block, or a part of a block that was over budget."""

    kind: Kind
    text: str
    page_start: int
    page_end: int
    tokens: int = 0
    level: int = 0
    block: int = -1  # index of the block in its section; parts of one block share it
    sep: str = "\n\n"  # what preceded this part inside its block: newline, space or nothing


Section = tuple[list[str], list[Piece]]  # a heading path and the blocks under it


def read_blocks(markdown: str, ocr_pages: dict[int, float] | None = None) -> list[Piece]:
    """The blocks of `markdown`; OCR'd pages and their confidence go into `ocr_pages`."""
    blocks: list[Piece] = []
    page = 1
    lines: list[str] = []
    kind: Kind = "text"
    start_page = 1
    fence = ""

    def flush() -> None:
        nonlocal lines
        text = "\n".join(lines).strip("\n")
        if text.strip():
            blocks.append(Piece(kind, text, start_page, page))
        lines = []

    for line in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence:
            lines.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                flush()
                fence = ""
            continue
        if marker := _PAGE_MARKER.match(line):
            flush()
            page = int(marker.group(1))
            if marker.group(2) is not None and ocr_pages is not None:
                ocr_pages[page] = float(marker.group(2))
            continue
        stripped = line.strip()
        new_kind: Kind = "table" if stripped.startswith("|") else "text"
        if not stripped or (lines and new_kind != kind):
            flush()
        if not stripped:
            continue
        if title := heading(line):
            flush()
            blocks.append(Piece("heading", line.strip(), page, page, level=title[0]))
            continue
        if opening := FENCE.match(line):
            flush()
            fence, kind, start_page = opening.group(1), "code", page
            lines.append(line)
            continue
        if not lines:
            kind, start_page = new_kind, page
        lines.append(line)
    flush()
    return blocks


def heading(line: str) -> tuple[int, str] | None:
    """An ATX heading's level and text, without a closing run of `#` (CommonMark), or None."""
    opening = _HEADING_OPEN.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].rstrip(" \t")
    body = text.rstrip("#")
    if body != text and body.endswith((" ", "\t")):
        text = body.rstrip(" \t")  # "## Title ##": the closing run goes
    return len(opening.group(1)), text


def is_table_separator(line: str) -> bool:
    """A markdown table's delimiter row: `| --- | :---: |`, outer pipes optional."""
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") else row
    return all(_SEPARATOR_CELL.fullmatch(cell.strip()) for cell in row.split("|"))


def sections(blocks: list[Piece]) -> list[Section]:
    """Group blocks under their heading path; empty headings wait for the next section."""
    found: list[Section] = []
    stack: list[tuple[int, str]] = []
    current: list[Piece] = []
    for block in blocks:
        if block.kind == "heading":
            if any(b.kind != "heading" for b in current):
                found.append(([text for _, text in stack], current))
                current = []
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            title = heading(block.text)
            assert title is not None  # the block is a heading: its line parses as one
            stack.append((block.level, title[1]))
        current.append(block)
    if current:
        found.append(([text for _, text in stack], current))
    return found
