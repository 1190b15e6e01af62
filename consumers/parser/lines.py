"""Visual lines of a page: the one `Line` type the reader builds and layout and markdown read.

pdfium hands over segments (runs of words between its line breaks) with each word's box;
`add_segment` joins a segment to the line before it when it sits on the same baseline, and
groups its words into cells: words closer than the font size stay in one cell, wider gaps
start another (the columns `markdown` and `layout` find tables in). Coordinates are PDF
points, y growing up the page: a line's `top` is above its `bottom`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BULLETS = "•◦▪▫●○■□‣\u2043∙·\uf0a7\uf0b7\uf076\uf0d8"  # \uf0..: Symbol/Wingdings bullets
DASHES = "\u2013\u2014*-"
_LONE_MARKER = re.compile(rf"^(?:[{BULLETS}{DASHES}]|\d{{1,3}}[.)]|\(?[a-z]\))$")

# One word: left, right, top, bottom, text.
Word = tuple[float, float, float, float, str]


@dataclass(slots=True)
class Line:
    """One visual line: its text, word groups separated by wide gaps, geometry and font."""

    text: str
    size: float
    bold: bool
    x0: float
    x1: float
    top: float
    bottom: float
    cells: list[tuple[float, float, str]] = field(default_factory=list)


def extent(words: list[Word]) -> tuple[float, float, float, float]:
    """min x0, max x1, max top, min bottom of the words: min() and max() as they compare, in
    one pass rather than four."""
    x0, x1, top, bottom, _ = words[0]
    for left, right, high, low, _ in words:
        if left < x0:
            x0 = left
        if right > x1:
            x1 = right
        if high > top:
            top = high
        if low < bottom:
            bottom = low
    return x0, x1, top, bottom


def add_segment(
    lines: list[Line],
    words: list[Word],
    extent: tuple[float, float, float, float],
    size: float,
    bold: bool,
) -> None:
    """Append pdfium's segment to the previous line if it sits on the same baseline."""
    x0, x1, top, bottom = extent
    middle = (top + bottom) / 2
    previous = lines[-1] if lines else None
    text = " ".join([w[4] for w in words])
    if previous is not None and previous.bottom <= middle <= previous.top:
        line = previous
        line.size = max(line.size, size) if line.size else size
        line.bold = line.bold and bold
        line.top, line.bottom = max(line.top, top), min(line.bottom, bottom)
        line.x1 = max(line.x1, x1)
        line.text = f"{line.text} {text}"
    else:
        line = Line(text, size, bold, x0, x1, top, bottom)
        lines.append(line)
    gap = max(size, 4.0)
    cells = line.cells
    for x0, x1, _, _, word in words:
        # A bullet or number drawn apart from its text still belongs to it (not a table column).
        if cells and (x0 - cells[-1][1] <= gap or _LONE_MARKER.match(cells[-1][2])):
            last = cells[-1]
            cells[-1] = (last[0], x1 if x1 > last[1] else last[1], f"{last[2]} {word}")
        else:
            cells.append((x0, x1, word))


def close_below(previous: Line, line: Line, gap: float) -> bool:
    """`line` starts below `previous` with at most `gap` x font size of white space between."""
    unit = max(previous.size, line.size, 4.0)
    return previous.bottom > line.bottom and previous.bottom - line.top <= unit * gap
