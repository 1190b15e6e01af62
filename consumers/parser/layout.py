"""Page layout the line reader cannot see on its own.

- Running headers and footers: lines near the top or bottom of 60% of the pages or more
  that read the same once page numbers are ignored. They are removed; one with more to it
  than a page number ("UIN- ... Policy Wordings") is kept once, where it first appears,
  without the number.
- Watermarks: large letter-spaced lines ("S A M P L E") are dropped.
- Borderless grids: producers that draw a table cell by cell (reportlab, Word) send the
  text of one row's cells one after another, so the reader's stream goes back up the page
  for each cell. Where it does, the lines around are re-read by position: columns from the
  x-ranges no text crosses, rows from the white space between lines, and the grid comes out
  as rows of cells. Columns of prose go back up only once per column and keep their stream
  (reading) order. A grid too irregular for a table (a third of its body cells or more
  empty: a schedule whose rows fill different columns) comes out as one `label: value` block
  per row instead, so each value stays beside the column it belongs to.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

from consumers.parser.lines import Line

# The separators before "page" are taken only from where their run starts, and never given
# back (possessive): searched from every position of a long run, they took quadratic time.
_PAGE_NUMBER = re.compile(
    r"(?:(?<![/|\s-])[/|\s-]*+\bpage\s*\d+(?:\s*(?:of|/)\s*\d+)?\b|^\s*\d+\s*$)", re.I
)
_DIGITS = re.compile(r"\d+")
_EDGE_LINES = 3  # lines from the top and from the bottom of a page that may be furniture
_LOOKBACK = 120  # lines searched back for the cell a stream jump returns beside


def strip_furniture(pages: list[list[Line]]) -> None:
    """Remove running headers/footers in place (see the module docstring)."""
    with_text = [lines for lines in pages if lines]
    if len(with_text) < 2:
        return
    keys: list[dict[int, tuple]] = []
    seen: Counter[tuple] = Counter()
    for lines in pages:
        edge = sorted(range(len(lines)), key=lambda k: -lines[k].top)
        picked = set(edge[:_EDGE_LINES] + edge[-_EDGE_LINES:])
        page_keys = {k: _furniture_key(lines[k]) for k in picked}
        keys.append(page_keys)
        seen.update(set(page_keys.values()))
    needed = max(2, math.ceil(len(with_text) * 0.6))
    furniture = {key for key, count in seen.items() if count >= needed}
    if not furniture:
        return
    kept: set[tuple] = set()
    for lines, page_keys in zip(pages, keys, strict=True):
        drop = set()
        for k, key in page_keys.items():
            if key not in furniture:
                continue
            rest = _PAGE_NUMBER.sub("", lines[k].text).strip(" /|-")
            if key in kept or sum(c.isalpha() for c in rest) < 4:
                drop.add(k)
                continue
            kept.add(key)
            line = lines[k]
            line.text, line.cells = rest, [(line.x0, line.x1, rest)]
        lines[:] = [line for k, line in enumerate(lines) if k not in drop]


def _furniture_key(line: Line) -> tuple:
    # Right-aligned numbers move x; the baseline and the words stay.
    return (_DIGITS.sub("#", " ".join(line.text.lower().split())), round(line.bottom / 3))


def is_letterspaced(text: str) -> bool:
    """ "S A M P L E": four or more single letters apart."""
    words = text.split()
    return len(words) >= 4 and all(len(w) == 1 and w.isalpha() for w in words)


def drop_watermarks(lines: list[Line], body: float) -> None:
    """Remove large letter-spaced lines in place."""
    if body > 0:
        lines[:] = [x for x in lines if not (x.size >= body * 1.5 and is_letterspaced(x.text))]


# --- borderless grids


def grids(lines: list[Line]) -> dict[int, tuple[int, list[list[str]]]]:
    """Grids drawn cell by cell: {first line: (line after the grid, rows of cell texts)}."""
    spans: list[list[int]] = []
    for j in range(1, len(lines)):
        if lines[j].bottom <= lines[j - 1].top:  # the stream goes down the page: no jump
            continue
        start = _beside(lines, j)
        if start is None:
            continue
        if spans and start <= spans[-1][1] + 1:
            spans[-1][1] = j
        else:
            spans.append([start, j])
    regions: list[list[int]] = []
    for start, end in spans:
        if regions and start <= regions[-1][1] + 1:
            start = regions.pop()[0]
        columns = column_spans([c for line in lines[start : end + 1] for c in line.cells])
        while end + 1 < len(lines) and _row_like(lines[end], lines[end + 1], columns, multi=False):
            end += 1  # the rest of the row's last cell, and rows drawn line by line
        regions.append([start, end])
    found: dict[int, tuple[int, list[list[str]]]] = {}
    for start, end in regions:
        grid = _grid(lines, start, end)
        if grid is not None:
            found[grid[0]] = grid[1:]
    return found


def _beside(lines: list[Line], j: int) -> int | None:
    """The earliest line before `j` at the same height, left of it: where its row began."""
    line = lines[j]
    middle = (line.top + line.bottom) / 2
    start = None
    for k in range(j - 1, max(-1, j - _LOOKBACK), -1):
        other = lines[k]
        if other.bottom <= middle <= other.top and other.x1 <= line.x0:
            start = k
    return start


def _grid(lines: list[Line], start: int, end: int) -> tuple[int, int, list[list[str]]] | None:
    region = lines[start : end + 1]
    columns = column_spans([c for line in region for c in line.cells])
    if len(columns) < 2:
        return None
    first, last = columns[0], columns[-1]
    if len(columns) == 2 and first[1] - first[0] > 0.4 * (last[1] - first[0]):
        return None  # two wide columns: prose, read in stream order
    jumps = sum(lines[k].bottom > lines[k - 1].top for k in range(start + 1, end + 1))
    # Prose in N columns jumps back up N - 1 times; a grid does so for every row.
    if jumps < len(columns) and not any(len(x.cells) > 1 for x in region):
        return None
    while start > 0 and _row_like(lines[start - 1], lines[start], columns, multi=True):
        start -= 1  # a header row drawn on one baseline
    return start, end + 1, _rows(lines[start : end + 1], columns)


def _row_like(above: Line, below: Line, columns: list[tuple[float, float]], *, multi: bool) -> bool:
    """`above` and `below` are neighbours in the grid: close, and no cell crosses a column gap
    (the line brought in must have two or more cells when `multi`)."""
    unit = max(above.size, below.size, 4.0)
    if not (above.bottom > below.bottom and above.bottom - below.top <= unit * 1.5):
        return False
    line = above if multi else below
    if multi and len(line.cells) < 2:
        return False
    gaps = list(zip([c[1] for c in columns], [c[0] for c in columns[1:]], strict=False))
    return not any(x0 < g1 and x1 > g0 for x0, x1, _ in line.cells for g0, g1 in gaps)


def column_spans(cells: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """Merge the cells' x-ranges: each remaining interval is one column."""
    merged: list[tuple[float, float]] = []
    for x0, x1, _ in sorted(cells):
        if merged and x0 <= merged[-1][1] + 1.0:
            merged[-1] = (merged[-1][0], max(merged[-1][1], x1))
        else:
            merged.append((x0, x1))
    return merged


def _rows(lines: list[Line], columns: list[tuple[float, float]]) -> list[list[str]]:
    """Cells by position: visual lines top to bottom, a new row after wider white space."""
    pieces = sorted(
        ((line.top, line.bottom, x0, x1, text) for line in lines for x0, x1, text in line.cells),
        key=lambda p: (-p[0], p[2]),
    )
    visual: list[list[tuple]] = []
    for piece in pieces:
        middle = (piece[0] + piece[1]) / 2
        if visual and visual[-1][0][1] <= middle <= visual[-1][0][0]:
            visual[-1].append(piece)
        else:
            visual.append([piece])
    gaps = [min(p[1] for p in a) - max(p[0] for p in b) for a, b in itertools.pairwise(visual)]
    size = max(line.size for line in lines) or 10.0
    # Lines of one cell are the closest; rows are further apart. All alike: one line a row.
    threshold = min(gaps, default=0.0) + size * 0.3
    rows: list[list[str]] = []
    for index, group in enumerate(visual):
        if index == 0 or gaps[index - 1] > threshold:
            rows.append([""] * len(columns))
        row = rows[-1]
        for _, _, x0, x1, text in sorted(group, key=lambda p: p[2]):
            column = next(
                (k for k, (c0, c1) in enumerate(columns) if c0 <= (x0 + x1) / 2 <= c1),
                len(columns) - 1,
            )
            row[column] = _join(row[column], text)
    return rows


def irregular(rows: list[list[str]]) -> bool:
    """Too many empty body cells for a markdown table to read right."""
    body = [cell for row in rows[1:] for cell in row]
    return bool(body) and sum(not cell for cell in body) * 3 >= len(body)


def label_value(rows: list[list[str]]) -> str:
    """One block per body row: `header: cell` for each filled cell. Without a header row to
    label every column that has a value (a header cell whose column is empty below would be
    lost), each row is one line of its filled cells, `; `-joined: nothing is dropped."""
    header = rows[0]
    used = [any(row[k] for row in rows[1:]) for k in range(len(header))]
    if not all(header) or not all(used):
        return "\n".join("; ".join(c for c in row if c) for row in rows if any(row))
    blocks = []
    for row in rows[1:]:
        lines = [f"{label}: {cell}" for label, cell in zip(header, row, strict=True) if cell]
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _join(text: str, more: str) -> str:
    if not text:
        return more
    if text.endswith("-") and len(text) > 1 and text[-2].isalpha():
        return text + more
    return f"{text} {more}"
