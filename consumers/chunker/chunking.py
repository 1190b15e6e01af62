"""Chunkers `markdown-simple@1` and `@2`: heading sections packed to a token budget, overlapping.

The chunker's public face (`Chunk`, `chunk_markdown`, and the versions of `versions.py`):
1. `blocks.py` reads the markdown into blocks (heading, paragraph, table, fenced code) with
   their pages, and groups them into sections under their heading path. A page the parser
   OCR'd gives its chunks `ocr_confidence` (the mean over their OCR'd pages).
2. `packing.py` packs each section's blocks into chunks of at most `target_tokens`, joined by
   blank lines, cutting only a block over budget; a chunk that continues its section starts
   with the last `overlap_tokens` of the previous chunk's final paragraph.
3. `@2` also merges small sections under one parent heading and gives each chunk a
   contextual header for its embedding input (`contextual.py`).

Same input, same chunks: `chunk_id` is a uuid5 of document, version, ordinal and content hash.
Every chunk is at most `MAX_EMBED_TOKENS` (8,191) tokens, whatever the settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass, field

from accessa.tokens import MAX_EMBED_TOKENS, count_tokens, split_by_tokens
from consumers.chunker import contextual
from consumers.chunker.blocks import Section, read_blocks, sections
from consumers.chunker.packing import join, pack
from consumers.chunker.versions import (
    CHUNKER_V2,
    CHUNKER_VERSION,
    CHUNKERS,
    ChunkerSpec,
    resolve_version,
)

__all__ = [
    "CHUNKERS",
    "CHUNKER_V2",
    "CHUNKER_VERSION",
    "CHUNK_NAMESPACE",
    "Chunk",
    "ChunkerSpec",
    "chunk_markdown",
    "resolve_version",
]

CHUNK_NAMESPACE = uuid.UUID("1c5e4fe8-2d33-502f-a7e6-02b674896f5d")  # fixed forever


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
    found = sections(read_blocks(markdown, ocr_pages))
    title = contextual.document_title(markdown) if version.startswith(CHUNKER_V2) else None
    if title is not None:
        found = _merge_small(found, title, target)
    for path, blocks in found:
        header = contextual.embed_header(title, path) if title is not None else ""
        budget = max(16, target - count_tokens(header)) if header else target
        for group in pack(blocks, budget, min(overlap, budget // 2)):
            content = join(group).strip()
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


def _merge_small(found: list[Section], title: str, target: int) -> list[Section]:
    """Adjacent sections under one parent heading, joined while the whole fits the budget
    with its header; the joined section's path is the parent's (`contextual.mergeable`)."""
    merged: list[Section] = []
    used = 0
    for path, blocks in found:
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
