"""A section's blocks packed into groups of at most `target` tokens, overlapping.

A block over budget is cut: paragraphs at lines, then sentences, then tokens; tables at rows
with the header repeated; code at lines, re-fenced. Nothing else is ever cut. A group that
continues its section starts with the last `overlap` tokens of the previous group's final
paragraph (never of a table or code).
"""

from __future__ import annotations

import itertools
import re

from accessa.tokens import count_tokens, decode, encode, split_by_tokens
from consumers.chunker import blocks as md
from consumers.chunker.blocks import Piece

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def pack(blocks: list[Piece], target: int, overlap: int) -> list[list[Piece]]:
    """The blocks in order, as groups of at most `target` tokens (`join` makes one a text)."""
    groups: list[list[Piece]] = []
    current: list[Piece] = []
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


def join(group: list[Piece]) -> str:
    """Blocks are separated by a blank line; parts of one paragraph by what separated them."""
    text = group[0].text
    for previous, piece in itertools.pairwise(group):
        same_paragraph = piece.kind == previous.kind == "text" and piece.block == previous.block
        text += (piece.sep if same_paragraph else "\n\n") + piece.text
    return text


def _fit(block: Piece, index: int, target: int, room: int) -> list[Piece]:
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


def _split_table(block: Piece, target: int) -> list[Piece]:
    lines = block.text.split("\n")
    size = 2 if len(lines) > 1 and md.is_table_separator(lines[1]) else 1
    header = "\n".join(lines[:size])
    budget = target - count_tokens(header) - 1
    if budget < target // 4:  # a header that eats the budget is not worth repeating
        return _group(block, lines, target, "\n")
    parts = _group(block, lines[size:], budget, "\n")
    for part in parts:
        part.text = f"{header}\n{part.text}"
        part.tokens = count_tokens(part.text)
    return parts


def _split_code(block: Piece, target: int) -> list[Piece]:
    lines = block.text.split("\n")
    opening = lines[0]
    closing = lines[-1] if len(lines) > 1 and md.FENCE.match(lines[-1]) else opening[:3]
    body = lines[1:-1] if closing == lines[-1] else lines[1:]
    budget = target - count_tokens(f"{opening}\n\n{closing}")
    parts = _group(block, body, budget, "\n")
    for part in parts:
        part.text = f"{opening}\n{part.text}\n{closing}"
        part.tokens = count_tokens(part.text)
    return parts


def _group(block: Piece, units: list[str], budget: int, joiner: str) -> list[Piece]:
    """Greedily join consecutive units up to `budget` tokens; cut any unit that alone is over."""
    budget = max(budget, 16)
    parts: list[Piece] = []
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


def _cut(block: Piece, text: str, budget: int) -> list[Piece]:
    """One line over budget: whole sentences where they fit, else token windows."""
    sentences = _SENTENCE_END.split(text)
    if len(sentences) > 1:
        return _group(block, sentences, budget, " ")
    return [_part(block, cut, count_tokens(cut), "") for cut in split_by_tokens(text, budget)]


def _part(block: Piece, text: str, tokens: int, sep: str) -> Piece:
    return Piece(block.kind, text, block.page_start, block.page_end, tokens, 0, block.block, sep)


def _overlap(previous: Piece, overlap: int) -> Piece | None:
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
        return Piece("text", text, page, page, tokens, block=previous.block, sep=previous.sep)
    return None


def _starts_with_space(token: int) -> bool:
    try:
        return decode([token])[:1].isspace()
    except ValueError:
        return False
