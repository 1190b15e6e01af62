"""Chunkers `markdown-simple@1` and `@2`: heading sections packed to a token budget, overlapping.

1. Read the markdown into blocks (heading, paragraph, table, fenced code), noting the page of
   each from the `<!-- page N -->` markers (pages before the first marker count as page 1).
   A page the parser OCR'd is marked `<!-- page N ocr confidence=C -->`: its chunks carry
   `ocr_confidence` (the mean over their OCR'd pages).
2. A heading starts a section; headings with no text of their own join the next section.
3. Blocks are packed into chunks of at most `target_tokens`, joined by blank lines. A block
   over budget is cut: paragraphs at lines, then sentences, then tokens; tables at rows with
   the header repeated; code at lines, re-fenced. Nothing else is ever cut.
4. A chunk that continues its section starts with the last `overlap_tokens` of the previous
   chunk's final paragraph (never of a table or code).

Same input, same chunks: `chunk_id` is a uuid5 of document, version, ordinal and content hash.
Every chunk is at most `MAX_EMBED_TOKENS` (8,191) tokens, whatever the settings.

Versions (`resolve_version`): `markdown-simple@1` packs to the configured budget;
`markdown-simple@1?target=N[&overlap=M]` pins the budget in the version string, so its chunk
ids differ and it can live beside the plain version (`accessa reprocess --chunker-version`).
`markdown-simple@2` (same parameters) also merges small sections under one parent heading and
gives each chunk a contextual header for its embedding input (`contextual.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
import uuid
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl

from accessa.tokens import MAX_EMBED_TOKENS, count_tokens, decode, encode, split_by_tokens
from consumers.chunker import contextual

CHUNKER_VERSION = "markdown-simple@1"
CHUNKER_V2 = "markdown-simple@2"
CHUNKERS = (CHUNKER_VERSION, CHUNKER_V2)
CHUNK_NAMESPACE = uuid.UUID("1c5e4fe8-2d33-502f-a7e6-02b674896f5d")  # fixed forever

_PAGE_MARKER = re.compile(
    r"^\s*<!--\s*page\s+(\d+)(?:\s+ocr\s+confidence=(\d+(?:\.\d+)?))?\s*-->\s*$", re.IGNORECASE
)
# Headings and table separators are read by code around a bounded regex: as one pattern
# each, adjacent runs of the same characters backtracked quadratically on a long line.
_HEADING_OPEN = re.compile(r"^ {0,3}(#{1,6})[ \t]+")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SEPARATOR_CELL = re.compile(r":?-{3,}:?")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")

_Kind = Literal["heading", "text", "table", "code"]


@dataclass(frozen=True)
class Chunk:
    """One piece of a document as it is embedded and stored."""

    chunk_id: uuid.UUID
    ordinal: int
    content: str
    content_sha256: str
    token_count: int
    heading_path: list[str] = field(hash=False)
    page_start: int
    page_end: int
    ocr_confidence: float | None = None  # set when some of its pages were OCR'd
    # @2: what precedes `content` in the embedding input, and the SHA-256 of that input.
    embed_header: str = ""
    embed_sha256: str = ""


@dataclass(frozen=True)
class ChunkerSpec:
    """A chunker version resolved to the budget it packs to."""

    version: str  # canonical spelling: what chunk ids and `chunker_version` columns hold
    target_tokens: int
    overlap_tokens: int


def resolve_version(version: str, *, target_tokens: int, overlap_tokens: int) -> ChunkerSpec:
    """The spec of `version`; parameters it does not pin come from the given defaults.
    Raises ValueError for an unknown chunker, parameter or out-of-range value."""
    name, sep, query = version.partition("?")
    if name not in CHUNKERS:
        raise ValueError(f"unknown chunker {name!r} (known: {', '.join(CHUNKERS)})")
    pinned: dict[str, int] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if sep else []
    except ValueError as exc:
        raise ValueError(f"{version!r}: parameters must read key=value&key=value") from exc
    if sep and not pairs:
        raise ValueError(f"{version!r}: nothing after '?'")
    for key, value in pairs:
        if key not in ("target", "overlap") or key in pinned or not value.isdigit():
            raise ValueError(f"{version!r}: {key}={value} (give target=N and/or overlap=M once)")
        pinned[key] = int(value)
    target = pinned.get("target", target_tokens)
    overlap = pinned.get("overlap", overlap_tokens)
    if "target" in pinned and not 32 <= target <= MAX_EMBED_TOKENS:
        raise ValueError(f"{version!r}: target must be 32..{MAX_EMBED_TOKENS} tokens")
    if "overlap" in pinned and overlap > target // 2:
        raise ValueError(f"{version!r}: overlap must be at most half the target ({target // 2})")
    params = "&".join(f"{k}={pinned[k]}" for k in ("target", "overlap") if k in pinned)
    return ChunkerSpec(f"{name}?{params}" if params else name, target, overlap)


@dataclass(slots=True)
class _Piece:
    """A unit the packer never cuts: a block, or a part of a block that was over budget."""

    kind: _Kind
    text: str
    page_start: int
    page_end: int
    tokens: int = 0
    level: int = 0
    block: int = -1  # index of the block in its section; parts of one block share it
    sep: str = "\n\n"  # what preceded this part inside its block: newline, space or nothing


def chunk_markdown(
    markdown: str,
    *,
    document_id: uuid.UUID,
    version: str = CHUNKER_VERSION,
    target_tokens: int = 512,
    overlap_tokens: int = 64,
) -> list[Chunk]:
    """Split `markdown` into ordered chunks; `[]` if it has no content."""
    target = max(16, min(target_tokens, MAX_EMBED_TOKENS))
    overlap = max(0, min(overlap_tokens, target // 2))
    chunks: list[Chunk] = []
    ocr_pages: dict[int, float] = {}
    sections = _sections(_blocks(markdown, ocr_pages))
    title = contextual.document_title(markdown) if version.startswith(CHUNKER_V2) else None
    if title is not None:
        sections = _merge_small(sections, title, target)
    for path, blocks in sections:
        header = contextual.embed_header(title, path) if title is not None else ""
        budget = max(16, target - count_tokens(header)) if header else target
        for group in _pack(blocks, budget, min(overlap, budget // 2)):
            content = _join(group).strip()
            page_start = min(p.page_start for p in group)
            page_end = max(p.page_end for p in group)
            tokens = count_tokens(content)
            fits = tokens <= MAX_EMBED_TOKENS - (target - budget)
            parts = [content] if fits else split_by_tokens(content, budget)
            ocr = [c for page, c in ocr_pages.items() if page_start <= page <= page_end]
            for part in parts:
                part_tokens = tokens if len(parts) == 1 else count_tokens(part)
                chunk = _chunk(
                    document_id, version, len(chunks), part, path, page_start, page_end, part_tokens
                )
                if ocr:
                    chunk = dataclasses.replace(chunk, ocr_confidence=round(sum(ocr) / len(ocr), 3))
                chunks.append(_contextualize(chunk, header))
    return chunks


def _merge_small(
    sections: list[tuple[list[str], list[_Piece]]], title: str, target: int
) -> list[tuple[list[str], list[_Piece]]]:
    """Adjacent sections under one parent heading, joined while the whole fits the budget
    with its header; the joined section's path is the parent's (`contextual.mergeable`)."""
    merged: list[tuple[list[str], list[_Piece]]] = []
    used = 0
    for path, blocks in sections:
        tokens = count_tokens("\n\n".join(b.text for b in blocks))
        if merged and (joint := contextual.mergeable(merged[-1][0], path)) is not None:
            budget = target - count_tokens(contextual.embed_header(title, joint))
            if used + 1 + tokens <= budget:
                merged[-1] = (joint, merged[-1][1] + blocks)
                used += 1 + tokens
                continue
        merged.append((path, list(blocks)))
        used = tokens
    return merged


def _contextualize(chunk: Chunk, header: str) -> Chunk:
    """@2: the header goes into the embedding input, its tokens into the count paid for."""
    if not header:
        return chunk
    return dataclasses.replace(
        chunk,
        token_count=count_tokens(header + chunk.content),
        embed_header=header,
        embed_sha256=contextual.embed_sha256(header, chunk.content),
    )


def _join(group: list[_Piece]) -> str:
    """Blocks are separated by a blank line; parts of one paragraph by what separated them."""
    text = group[0].text
    for previous, piece in itertools.pairwise(group):
        same_paragraph = piece.kind == previous.kind == "text" and piece.block == previous.block
        text += (piece.sep if same_paragraph else "\n\n") + piece.text
    return text


def _chunk(
    document_id: uuid.UUID,
    version: str,
    ordinal: int,
    content: str,
    path: list[str],
    page_start: int,
    page_end: int,
    tokens: int,
) -> Chunk:
    digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    return Chunk(
        chunk_id=uuid.uuid5(CHUNK_NAMESPACE, f"{document_id}:{version}:{ordinal}:{digest}"),
        ordinal=ordinal,
        content=content,
        content_sha256=digest,
        token_count=tokens,
        heading_path=list(path),
        page_start=page_start,
        page_end=page_end,
    )


# --- markdown -> blocks


def _blocks(markdown: str, ocr_pages: dict[int, float] | None = None) -> list[_Piece]:
    """The blocks of `markdown`; OCR'd pages and their confidence go into `ocr_pages`."""
    blocks: list[_Piece] = []
    page = 1
    lines: list[str] = []
    kind: _Kind = "text"
    start_page = 1
    fence = ""

    def flush() -> None:
        nonlocal lines
        text = "\n".join(lines).strip("\n")
        if text.strip():
            blocks.append(_Piece(kind, text, start_page, page))
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
        new_kind: _Kind = "table" if stripped.startswith("|") else "text"
        if not stripped or (lines and new_kind != kind):
            flush()
        if not stripped:
            continue
        if heading := _heading(line):
            flush()
            blocks.append(_Piece("heading", line.strip(), page, page, level=heading[0]))
            continue
        if opening := _FENCE.match(line):
            flush()
            fence, kind, start_page = opening.group(1), "code", page
            lines.append(line)
            continue
        if not lines:
            kind, start_page = new_kind, page
        lines.append(line)
    flush()
    return blocks


def _heading(line: str) -> tuple[int, str] | None:
    """An ATX heading's level and text, without a closing run of `#` (CommonMark), or None."""
    opening = _HEADING_OPEN.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].rstrip(" \t")
    body = text.rstrip("#")
    if body != text and body.endswith((" ", "\t")):
        text = body.rstrip(" \t")  # "## Title ##": the closing run goes
    return len(opening.group(1)), text


def _is_table_separator(line: str) -> bool:
    """A markdown table's delimiter row: `| --- | :---: |`, outer pipes optional."""
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") else row
    return all(_SEPARATOR_CELL.fullmatch(cell.strip()) for cell in row.split("|"))


def _sections(blocks: list[_Piece]) -> list[tuple[list[str], list[_Piece]]]:
    """Group blocks under their heading path; empty headings wait for the next section."""
    sections: list[tuple[list[str], list[_Piece]]] = []
    stack: list[tuple[int, str]] = []
    current: list[_Piece] = []
    for block in blocks:
        if block.kind == "heading":
            if any(b.kind != "heading" for b in current):
                sections.append(([text for _, text in stack], current))
                current = []
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            heading = _heading(block.text)
            assert heading is not None  # the block is a heading: its line parses as one
            stack.append((block.level, heading[1]))
        current.append(block)
    if current:
        sections.append(([text for _, text in stack], current))
    return sections


# --- packing


def _pack(blocks: list[_Piece], target: int, overlap: int) -> list[list[_Piece]]:
    groups: list[list[_Piece]] = []
    current: list[_Piece] = []
    used = 0
    # Parts of a block over budget leave room for the overlap that will precede them.
    room = target - overlap - 1 if overlap else target
    pieces = (p for index, block in enumerate(blocks) for p in _fit(block, index, target, room))
    for piece in pieces:
        if current and used + 1 + piece.tokens > target:
            groups.append(current)
            current, used = [], 0
            tail = _overlap(groups[-1][-1], overlap) if overlap else None
            if tail is not None and tail.tokens + 1 + piece.tokens <= target:
                current, used = [tail], tail.tokens
        used += piece.tokens + (1 if current else 0)
        current.append(piece)
    if current:
        groups.append(current)
    return groups


def _fit(block: _Piece, index: int, target: int, room: int) -> list[_Piece]:
    """The block as pieces of at most `target` tokens: itself if it fits, else parts
    (of paragraphs: of at most `room`, leaving space for the overlap)."""
    block.block = index
    block.tokens = count_tokens(block.text)
    if block.tokens <= target:
        return [block]
    if block.kind == "table":
        return _split_table(block, target)  # tables and code get no overlap
    if block.kind == "code":
        return _split_code(block, target)
    return _group(block, block.text.split("\n"), room, "\n")


def _split_table(block: _Piece, target: int) -> list[_Piece]:
    lines = block.text.split("\n")
    size = 2 if len(lines) > 1 and _is_table_separator(lines[1]) else 1
    header = "\n".join(lines[:size])
    budget = target - count_tokens(header) - 1
    if budget < target // 4:  # a header that eats the budget is not worth repeating
        return _group(block, lines, target, "\n")
    parts = _group(block, lines[size:], budget, "\n")
    for part in parts:
        part.text = f"{header}\n{part.text}"
        part.tokens = count_tokens(part.text)
    return parts


def _split_code(block: _Piece, target: int) -> list[_Piece]:
    lines = block.text.split("\n")
    opening = lines[0]
    closing = lines[-1] if len(lines) > 1 and _FENCE.match(lines[-1]) else opening[:3]
    body = lines[1:-1] if closing == lines[-1] else lines[1:]
    budget = target - count_tokens(f"{opening}\n\n{closing}")
    parts = _group(block, body, budget, "\n")
    for part in parts:
        part.text = f"{opening}\n{part.text}\n{closing}"
        part.tokens = count_tokens(part.text)
    return parts


def _group(block: _Piece, units: list[str], budget: int, joiner: str) -> list[_Piece]:
    """Greedily join consecutive units up to `budget` tokens; cut any unit that alone is over."""
    budget = max(budget, 16)
    parts: list[_Piece] = []
    texts: list[str] = []
    used = 0
    for unit in units:
        tokens = count_tokens(unit)
        if texts and (tokens > budget or used + 1 + tokens > budget):
            parts.append(_part(block, joiner.join(texts), used, joiner))
            texts, used = [], 0
        if tokens > budget:
            cuts = _cut(block, unit, budget)
            cuts[0].sep = joiner
            parts.extend(cuts)
            continue
        used += tokens + (1 if texts else 0)
        texts.append(unit)
    if texts:
        parts.append(_part(block, joiner.join(texts), used, joiner))
    return parts


def _cut(block: _Piece, text: str, budget: int) -> list[_Piece]:
    """One line over budget: whole sentences where they fit, else token windows."""
    sentences = _SENTENCE_END.split(text)
    if len(sentences) > 1:
        return _group(block, sentences, budget, " ")
    return [_part(block, cut, count_tokens(cut), "") for cut in split_by_tokens(text, budget)]


def _part(block: _Piece, text: str, tokens: int, sep: str) -> _Piece:
    return _Piece(block.kind, text, block.page_start, block.page_end, tokens, 0, block.block, sep)


def _overlap(previous: _Piece, overlap: int) -> _Piece | None:
    """The last `overlap` tokens of a paragraph, starting at a word, as a new piece."""
    if previous.kind != "text":
        return None
    if previous.tokens <= overlap:
        return _part(previous, previous.text, previous.tokens, previous.sep)
    ids = encode(previous.text[-overlap * 8 :])
    start = max(0, len(ids) - overlap)
    for _ in range(16):  # prefer to begin at a word
        if start >= len(ids) - 1 or _starts_with_space(ids[start]):
            break
        start += 1
    for begin in range(start, min(start + 4, len(ids))):
        try:
            text = decode(ids[begin:]).strip()
        except ValueError:
            continue
        tokens = count_tokens(text)
        while tokens > overlap:  # re-tokenized, the tail can come out a token or two longer
            text = text.partition(" ")[2]
            tokens = count_tokens(text)
        if not text:
            return None
        page = previous.page_end
        return _Piece("text", text, page, page, tokens, block=previous.block, sep=previous.sep)
    return None


def _starts_with_space(token: int) -> bool:
    try:
        return decode([token])[:1].isspace()
    except ValueError:
        return False
