"""Lines of each page -> markdown, with one `<!-- page N -->` marker per page.

Headings are lines clearly larger than the body size or bold at body size, short and
standalone; bullets and numbered lines become markdown list items; runs of two or more lines
whose words sit in aligned, widely spaced columns become markdown tables; everything else is
joined into paragraphs; a bold line inside a paragraph is not a heading. Running headers and
footers, watermarks and borderless grids drawn cell by cell are handled in `layout.py`.
"""

from __future__ import annotations

import re
from collections import Counter

from consumers.parser import layout
from consumers.parser.lines import BULLETS, DASHES, Line, close_below

_BULLET = re.compile(rf"^(?:[{BULLETS}]\s*|[{DASHES}]\s+)(\S.*)$")
_ORDERED = re.compile(r"^(\d{1,3})[.)]\s+(\S.*)$")
_LETTERED = re.compile(r"^(\(?(?:[a-z]|[ivx]{1,4})\)|\([A-Z]\))\s+(\S.*)$")
_MARKDOWN_START = re.compile(r"^(#|\||>|`|<!--|=+$|-{3,}$)")
_SOFT_HYPHENS = ("\ufffe", "\x02", "\u00ad")


def to_markdown(pages: list[list[Line]]) -> str:
    layout.strip_furniture(pages)
    body = _body_size(pages)
    for lines in pages:
        layout.drop_watermarks(lines, body)
    levels = _heading_levels(pages, body)
    parts: list[str] = []
    for number, lines in enumerate(pages, start=1):
        parts.append(f"<!-- page {number} -->")
        parts.extend(_blocks(lines, body, levels))
    return "\n\n".join(parts) + "\n"


def _body_size(pages: list[list[Line]]) -> float:
    sizes: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            if line.size > 0:
                sizes[round(line.size * 2) / 2] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _heading_levels(pages: list[list[Line]], body: float) -> dict[float, int]:
    """Markdown level per heading font size: larger sizes first, bold body text last."""
    if body <= 0:
        return {}
    large = sorted(
        {round(line.size * 2) / 2 for lines in pages for line in lines if _is_large(line, body)},
        reverse=True,
    )
    levels = {size: min(rank, 5) for rank, size in enumerate(large, start=1)}
    levels[0.0] = min(len(large) + 1, 6)  # bold at body size
    return levels


def _is_large(line: Line, body: float) -> bool:
    return line.size >= body * 1.25 and _heading_text(line.text)


def _heading_text(text: str) -> bool:
    return (
        0 < len(text) <= 150 and any(c.isalpha() for c in text) and not layout.is_letterspaced(text)
    )


def _heading_level(line: Line, body: float, levels: dict[float, int]) -> int:
    if body <= 0 or not _heading_text(line.text):
        return 0
    if line.size >= body * 1.25:
        return levels.get(round(line.size * 2) / 2, 0)
    if line.bold and line.size >= body * 0.95 and not line.text.endswith((".", ",", ";")):
        return levels.get(0.0, 0)
    return 0


def _blocks(lines: list[Line], body: float, levels: dict[float, int]) -> list[str]:
    blocks: list[str] = []
    grids = layout.grids(lines)
    heads = [_line_level(lines, k, body, levels) for k in range(len(lines))]
    i = 0
    while i < len(lines):
        line = lines[i]
        if i in grids:
            i, rows = grids[i]
            blocks.append(_table_markdown(rows))
            continue
        table, i_next = _table_at(lines, i)
        if table:
            blocks.append(table)
            i = i_next
            continue
        level = heads[i]
        i += 1
        if level:
            text = line.text
            while (
                i < len(lines)
                and heads[i] == level
                and close_below(line, lines[i], 0.6)
                and len(text) + len(lines[i].text) <= 150
            ):
                text, line = f"{text} {lines[i].text}", lines[i]
                i += 1
            blocks.append(f"{'#' * level} {_clean(text)}")
            continue
        item = _list_item(line.text)
        text = item or _escape(line.text)
        while i < len(lines) and _continues(line, lines[i], heads[i], is_item=bool(item)):
            text = _join(text, lines[i].text)
            line = lines[i]
            i += 1
        blocks.append(_clean(text))
    return blocks


def _line_level(lines: list[Line], i: int, body: float, levels: dict[float, int]) -> int:
    level = _heading_level(lines[i], body, levels)
    if level and lines[i].size < body * 1.25 and _inside_paragraph(lines, i, body, levels):
        return 0
    return level


def _inside_paragraph(lines: list[Line], i: int, body: float, levels: dict[float, int]) -> bool:
    """A bold line is no heading when the text before runs into it or it runs on into the
    next line: a bold sentence inside a paragraph."""
    line = lines[i]
    unit = max(line.size, 4.0)
    if i > 0:
        before = lines[i - 1]
        if (
            close_below(before, line, 0.6)
            and not _heading_level(before, body, levels)
            and not before.text.rstrip().endswith((".", "!", "?", ":"))
            and abs(before.x0 - line.x0) < unit
        ):
            return True
    if i + 1 < len(lines):
        after = lines[i + 1]
        if (
            close_below(line, after, 0.6)
            and not after.bold
            and abs(after.x0 - line.x0) < unit
            and line.x1 >= after.x1 - unit
        ):
            return True
    return False


def _list_item(text: str) -> str | None:
    if match := _BULLET.match(text):
        return f"- {match.group(1)}"
    if match := _ORDERED.match(text):
        return f"{match.group(1)}. {match.group(2)}"
    if match := _LETTERED.match(text):
        return f"- {match.group(1)} {match.group(2)}"
    return None


def _continues(previous: Line, line: Line, heading: int, *, is_item: bool) -> bool:
    """Whether `line` continues the paragraph or list item that `previous` ends."""
    if not close_below(previous, line, 0.6):
        return False
    if abs(previous.size - line.size) > 1.5:
        return False
    if heading or _list_item(line.text):
        return False
    ends_sentence = previous.text.rstrip().endswith((".", "!", "?", ":", '"', "”"))
    unit = max(line.size, 4.0)
    if is_item:
        return line.x0 >= previous.x0 - unit * 0.5
    indented = line.x0 > previous.x0 + unit * 0.8
    ended_short = previous.x1 < line.x1 - unit * 3
    return not (ends_sentence and (indented or ended_short))


def _join(text: str, more: str) -> str:
    if text.endswith(("\ufffe", "\x02", "\u00ad")):
        return text[:-1] + more
    if text.endswith("-") and len(text) > 1 and text[-2].isalpha():
        return text + more
    return f"{text} {more}"


def _table_at(lines: list[Line], start: int) -> tuple[str | None, int]:
    """A markdown table if `lines[start:]` begins with two or more aligned multi-column rows."""
    end = start
    while end < len(lines) and len(lines[end].cells) >= 2:
        if end > start and not close_below(lines[end - 1], lines[end], 2.0):
            break
        end += 1
    if end - start < 2:
        return None, start
    rows = lines[start:end]
    cells = [cell for row in rows for cell in row.cells]
    if sum(len(c[2]) for c in cells) / len(cells) > 60:
        return None, start  # long "cells" are prose columns, not a table
    columns = layout.column_spans(cells)
    if len(columns) < 2:
        return None, start
    table = []
    for row in rows:
        values = [""] * len(columns)
        for x0, x1, text in row.cells:
            index = next(
                (k for k, (c0, c1) in enumerate(columns) if c0 <= (x0 + x1) / 2 <= c1),
                len(columns) - 1,
            )
            values[index] = f"{values[index]} {text}".strip()
        table.append(values)
    return _table_markdown(table), end


def _table_markdown(rows: list[list[str]]) -> str:
    """Rows of cell texts as a markdown table; the first row is its header. A grid too sparse
    for one (see `layout.irregular`) comes out as `label: value` blocks instead."""
    if layout.irregular(rows):
        blocks = layout.label_value([[_clean(cell) for cell in row] for row in rows])
        return "\n".join(_escape(line) for line in blocks.split("\n"))
    table = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    table.insert(1, "|" + " --- |" * len(rows[0]))
    return "\n".join(table)


def _cell(text: str) -> str:
    return _clean(text).replace("|", "\\|")


def _escape(text: str) -> str:
    """Keep body text from reading as markdown structure (headings, tables, fences, markers)."""
    return "\\" + text if _MARKDOWN_START.match(text) else text


def _clean(text: str) -> str:
    for hyphen in _SOFT_HYPHENS:  # str.replace, not str.translate: ten times faster here
        if hyphen in text:
            text = text.replace(hyphen, "")
    return text.strip()
