"""Just enough PDF object syntax for the bomb guard: tokens, names with `#xx` escapes,
strings, arrays, dictionaries and references, parsed without recursion (nesting can be
hundreds of thousands deep) and under a shared work allowance."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

_WHITE = rb"\x00\t\n\x0c\r "
_REGULAR_CLASS = rb"[^\x00\t\n\x0c\r ()<>\[\]{}/%]"
SKIP = re.compile(rb"(?:[\x00\t\n\x0c\r ]+|%[^\r\n]*)*")
_REGULAR = re.compile(_REGULAR_CLASS + rb"+")
NAME = re.compile(rb"/" + _REGULAR_CLASS + rb"*")
_HEX = re.compile(rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]*>")
_NUMBERS = re.compile(rb"\[[0-9.+\-\x00\t\n\x0c\r ]*\]")
_PAREN_BYTES = (b"(", b")", b"\\")
_INT = re.compile(rb"[+-]?\d+\Z")
_REAL = re.compile(rb"[+-]?(?:\d+\.\d*|\.\d+)\Z")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
# A name that is, or may decode to, a key whose value pdfium parses as content.
CONTENT_KEY = re.compile(
    rb"/(?:Contents|CharProcs|" + _REGULAR_CLASS + rb"*#" + _REGULAR_CLASS + rb"*)"
    rb"(?!" + _REGULAR_CLASS + rb")"
)
_IRREGULAR = frozenset(b"\x00\t\n\x0c\r ()<>[]{}/%")
# White space and comments, then one token, the group matched telling which (none: the end,
# or a delimiter no token starts with): one match a token where three calls were.
_TOKEN = re.compile(
    SKIP.pattern
    + rb"(?:(/"
    + _REGULAR_CLASS
    + rb"*)|(<<)|(>>)|("
    + _NUMBERS.pattern
    + rb")|(\[)|(\])|(\()|("
    + _HEX.pattern
    + rb")|([+-]?\d+)(?!"
    + _REGULAR_CLASS
    + rb")|("
    + _REGULAR_CLASS
    + rb"+))?"
)
_NAME_TOKEN, _OPEN_DICT, _CLOSE_DICT, _NUMBER_ARRAY, _OPEN_ARRAY, _CLOSE_ARRAY = range(1, 7)
_STRING, _HEX_STRING, _INT_TOKEN = 7, 8, 9
_HEADER = re.compile(rb"(?<![0-9])(\d{1,10})[\x00\t\n\x0c\r ]+(\d{1,5})[\x00\t\n\x0c\r ]+\Z")


class Malformed(ValueError):
    """Not a PDF object here (the caller tries another reading)."""


class WorkExceeded(ValueError):
    """Parsing this file cost more than its allowance: a hostile structure."""


class Name(str):
    """A PDF name, `#xx` escapes decoded (`/#46lateDecode` is `FlateDecode`)."""


class Ref(NamedTuple):
    num: int
    gen: int


class Work:
    """Bytes the lexer may still walk over for one file (quadratic tricks end here)."""

    def __init__(self, allowance: int) -> None:
        self.left = allowance

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise WorkExceeded("the PDF's structure is too costly to check")


def decode_name(raw: bytes) -> Name:
    if b"#" not in raw:
        return Name(raw.decode("latin-1"))
    return Name(_ESCAPE.sub(lambda m: bytes.fromhex(m.group(1).decode()), raw).decode("latin-1"))


def keywords(data: bytes, word: bytes) -> Iterator[int]:
    """Where `word` stands as a whole keyword (`obj` is not the end of `endobj`). A plain
    find: a regular expression with look-arounds walks every byte in Python's engine."""
    at = data.find(word)
    while at >= 0:
        end = at + len(word)
        if (at == 0 or data[at - 1] in _IRREGULAR) and (
            end == len(data) or data[end] in _IRREGULAR
        ):
            yield at
        at = data.find(word, end)


def matched(match: re.Match[bytes] | None) -> re.Match[bytes]:
    """`match` of a pattern that cannot fail where it is used (it matches the empty string,
    or the token it matches was already seen): a None here is a bug, not bad input."""
    if match is None:
        raise AssertionError("a pattern that cannot fail did not match")
    return match


def header_number(data: bytes, obj_at: int) -> int | None:
    """The object number written before the `obj` keyword at `obj_at`, if plainly written."""
    match = _HEADER.search(data, max(0, obj_at - 24), obj_at)
    return int(match.group(1)) if match else None


def next_token(data: bytes, pos: int) -> int:
    """Where the next token starts (after white space and comments)."""
    return matched(SKIP.match(data, pos)).end()


def parse_object(data: bytes, pos: int, end: int, work: Work) -> tuple[object, int]:
    """The object starting at `pos` (ending before `end`) and the position after it.

    `end` is where a keyword starts or the data ends, so no `<<` or `>>` runs across it."""
    start = pos
    stack: list[list] = [[]]
    opens: list[int] = []
    try:
        while True:
            match = matched(_TOKEN.match(data, pos, end))
            kind = match.lastindex
            if kind is None:
                pos = match.end()
                raise Malformed("unexpected end" if pos >= end else "stray delimiter")
            pos, after = match.span(kind)  # a bad token's bytes go uncounted
            if kind == _NAME_TOKEN:
                if after == end:  # a name runs on past `end`, as far as its characters go
                    after = matched(NAME.match(data, pos)).end()
                value: object = decode_name(data[pos + 1 : after])
            elif kind in (_OPEN_DICT, _OPEN_ARRAY):
                stack.append([])
                opens.append(kind)
                pos = after
                continue
            elif kind in (_CLOSE_DICT, _CLOSE_ARRAY):
                if not opens or opens[-1] != kind - 1:
                    raise Malformed("stray delimiter")
                opens.pop()
                value = _as_dict(stack.pop()) if kind == _CLOSE_DICT else stack.pop()
            elif kind == _STRING:
                after = _literal_end(data, pos, end)
                value = b""
            elif kind == _HEX_STRING:
                value = b""
            elif kind == _NUMBER_ARRAY:
                value = []  # widths, boxes, matrices: nothing to follow
            elif kind == _INT_TOKEN and after < end:
                value = int(data[pos:after])
            else:
                if after == end:  # a word runs on past `end` too
                    after = matched(_REGULAR.match(data, pos)).end()
                value = _word(data[pos:after], stack[-1])
            pos = after
            stack[-1].append(value)
            if not opens:
                return value, pos
    finally:
        work.spend(pos - start)


def parse_value(data: bytes, pos: int, end: int, work: Work) -> object:
    """Like `parse_object`, but `N G R` at the top is the reference it is in a dictionary."""
    value, after = parse_object(data, pos, end, work)
    if type(value) is int:
        try:
            gen, after = parse_object(data, after, end, work)
            word = _REGULAR.match(data, matched(SKIP.match(data, after, end)).end())
        except Malformed:
            return value
        if type(gen) is int and word is not None and word.group() == b"R":
            return Ref(value, gen)
    return value


def _word(word: bytes, items: list) -> object:
    if _INT.match(word):
        return int(word)
    if _REAL.match(word):
        return float(word)
    if word == b"R" and len(items) >= 2 and all(type(v) is int for v in items[-2:]):
        gen, num = items.pop(), items.pop()
        return Ref(num, gen)
    if word in (b"true", b"false"):
        return word == b"true"
    if word == b"null":
        return None
    raise Malformed("keyword inside an object")  # obj, endobj, stream, garbage


def _as_dict(items: list) -> dict[str, object]:
    """Keys are names; like pdfium, anything else where a key belongs is skipped."""
    result: dict[str, object] = {}
    i = 0
    while i < len(items):
        if isinstance(items[i], Name) and i + 1 < len(items):
            result[items[i]] = items[i + 1]
            i += 2
        else:
            i += 1
    return result


def _literal_end(data: bytes, pos: int, end: int) -> int:
    """Where the string opening at `pos` closes. The next of each of `(`, `)` and `\\` is
    found with bytes.find (a regex search walks long strings, such as base64 images, bytewise)
    and looked for again only once passed."""
    depth = 0
    found = [data.find(c, pos, end) for c in _PAREN_BYTES]
    while True:
        at = min((f for f in found if f >= 0), default=-1)
        if at < 0:
            raise Malformed("unterminated string")
        c = data[at]
        pos = at + 1
        if c == 0x5C:  # backslash: the next byte is escaped
            pos += 1
        elif c == 0x28:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos
        for k, f in enumerate(found):
            if 0 <= f < pos:
                found[k] = data.find(_PAREN_BYTES[k], pos, end)


def refs_in(value: object) -> list[Ref]:
    """Every reference inside `value`, at any depth."""
    found: list[Ref] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Ref):
            found.append(item)
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return found
