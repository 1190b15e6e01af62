"""Decompression-bomb guard for PDFs, run before pdfium sees the bytes.

pdfium decodes a page's content streams whole and has no size limit: a 1 MB upload holding a
1 GB stream of zeros costs ~2 GB of memory and seconds of CPU just to open its first page.
This walks the raw file and decodes every stream's filter chain (Flate, LZW, ASCIIHex,
ASCII85, RunLength; image codecs end a chain, as in pdfium) in chunks, counting each stage's
output against one running budget and stopping at the first byte over it.

Which streams: every `stream` keyword in the file, with its dictionary parsed from its `obj`
header (names unescaped, any length). Image XObjects are skipped (text extraction never
decodes them) unless something uses them as page contents or Type 3 glyphs, found through
every object, those inside object streams too.

Hand-written because pypdf and pikepdf decode a stream whole (no bounded, chunked decode), and
they find objects through the xref table while pdfium also finds them by scanning.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from accessa.pdf.filters import DECODERS, chunks_of
from accessa.pdf.syntax import (
    CONTENT_KEY,
    NAME,
    Malformed,
    Name,
    Ref,
    Work,
    WorkExceeded,
    decode_name,
    header_number,
    keywords,
    matched,
    next_token,
    parse_object,
    parse_value,
    refs_in,
)

DEFAULT_MAX_EXPANDED = 256 * 1_048_576
_INTS = re.compile(rb"\d+")
_BEFORE_KEYWORD = {bytes([c]) for c in b"\x00\t\n\x0c\r >]"}
# No comment, and every string closed without nested parentheses or escapes.
_PLAIN_STRINGS = re.compile(rb"[^(%]*(?:\([^()\\]*\)[^(%]*)*")
_CONTENT_KEYS = ("Contents", "CharProcs")  # pdfium parses what these point at as content


class PdfBomb(ValueError):
    """The PDF's compressed streams expand past the allowed budget."""


@dataclass(frozen=True)
class _Stream:
    num: int | None
    info: dict
    raw: memoryview
    exact: bool  # the dictionary parsed cleanly (else: filter names read leniently)


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.used += len(chunk)
            if self.used > self.limit:
                mb = self.limit / 1_048_576
                raise PdfBomb(f"the PDF's compressed content expands to more than {mb:g} MB")
            yield chunk


def check_expansion(data: bytes, max_expanded_bytes: int = DEFAULT_MAX_EXPANDED) -> int:
    """Total bytes the PDF's filtered streams decode to; PdfBomb past `max_expanded_bytes`.

    Streams that do not decode are counted up to their first bad byte (pdfium keeps that
    much); telling broken files apart is pdfium's job.
    """
    budget = _Budget(max_expanded_bytes)
    try:
        reader = _Reader(data)
        images = []
        for stream in reader.streams():
            info = stream.info
            if stream.exact and info.get("Subtype") == "Image" and "PatternType" not in info:
                images.append(stream)
                continue
            _drain(reader.decode(stream, budget.counted))
        if images and any(reader.chain(s.info) for s in images):
            used_as_content = reader.content_objects(max_expanded_bytes)
            for stream in images:
                if stream.num is None or stream.num in used_as_content:
                    _drain(reader.decode(stream, budget.counted))
    except WorkExceeded as exc:
        raise PdfBomb(str(exc)) from exc
    return budget.used


def _drain(chunks: Iterable[bytes]) -> None:
    for _ in chunks:
        pass


class _Reader:
    """One file's objects and streams."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        self.work = Work(4 * len(data) + 4 * 1_048_576)
        self.objs = list(keywords(data, b"obj"))
        self._index: dict[int, int] | None = None
        self._streams: list[_Stream] = []

    def streams(self) -> Iterator[_Stream]:
        """Every stream: its dictionary is the earliest `obj` since the previous stream's own
        header that parses to exactly one dictionary ending at this `stream` keyword (a later
        one could be a fake inside one of its strings; an earlier one runs into a keyword)."""
        data, low = self.data, 0
        for at in keywords(data, b"stream"):
            first = bisect.bisect_left(self.objs, low)
            last = bisect.bisect_left(self.objs, at)
            info, num, exact = None, None, False
            for header in self.objs[first:last]:
                if _ends_before(data, header, at):
                    continue
                try:
                    value, after = parse_object(data, header + 3, at, self.work)
                except Malformed:
                    continue
                if isinstance(value, dict) and next_token(data, after) == at:
                    info, num, exact, low = value, header_number(data, header), True, header + 1
                    break
            if info is None:
                low = self.objs[last - 1] if last > first else low
                names = [decode_name(m.group()[1:]) for m in NAME.finditer(data, low, at)]
                info = {"Filter": [n for n in names if n in DECODERS]}
            start = _data_start(data, at + 6)
            stream = _Stream(num, info, self.view[start : self._end(start, info)], exact)
            self._streams.append(stream)
            yield stream

    def _end(self, start: int, info: dict) -> int:
        length = self.resolve(info.get("Length"))
        if (
            isinstance(length, int)
            and 0 <= length <= len(self.data) - start
            and self.data.startswith(b"endstream", next_token(self.data, start + length))
        ):
            return start + length
        found = self.data.find(b"endstream", start)
        return len(self.data) if found < 0 else found

    def resolve(self, value: object) -> object:
        """A reference's object (the last one written with that number), else `value`."""
        if not isinstance(value, Ref):
            return value
        if self._index is None:
            self._index = {}
            for at in self.objs:
                if (num := header_number(self.data, at)) is not None:
                    self._index[num] = at
        found = self._index.get(value.num)
        if found is None:
            return None
        try:
            return parse_object(self.data, found + 3, len(self.data), self.work)[0]
        except Malformed:
            return None

    def chain(self, info: dict) -> list[tuple[str, dict]]:
        """The filters pdfium runs, with their parameters, up to the first image codec."""
        filters = self.resolve(info.get("Filter"))
        parms = self.resolve(info.get("DecodeParms"))
        names = filters if isinstance(filters, list) else [filters]
        parm_list = parms if isinstance(parms, list) else [parms] * len(names)
        chain = []
        for name, parm in zip(names, parm_list + [None] * len(names), strict=False):
            name = self.resolve(name)
            if not isinstance(name, Name) or name not in DECODERS:
                break
            parm = self.resolve(parm)
            chain.append((str(name), parm if isinstance(parm, dict) else {}))
        return chain

    def decode(self, stream: _Stream, counted) -> Iterator[bytes]:
        chain = self.chain(stream.info)
        chunks: Iterable = chunks_of(stream.raw)
        for name, parms in chain:
            chunks = counted(DECODERS[name](chunks, parms))
        return iter(chunks) if chain else iter(())

    def content_objects(self, limit: int) -> set[int]:
        """Numbers of the objects pdfium may parse as content: what a /Contents or /CharProcs
        key points at (wherever the key is written, object streams included), through indirect
        arrays and dictionaries. Read leniently: a key inside a string only adds objects."""
        texts = [self.data]
        packed: dict[int, tuple[bytes, int]] = {}  # object number -> (object stream text, at)
        for stream in self._streams:
            if stream.exact and stream.info.get("Type") == "ObjStm":
                text, offsets = self._object_stream(stream, limit)
                texts.append(text)
                packed.update((num, (text, at)) for num, at in offsets.items())
        pending = [ref for text in texts for ref in self._content_refs(text)]
        streams = {s.num for s in self._streams}
        found: set[int] = set()
        while pending:
            ref = pending.pop()
            if ref.num in found:
                continue
            found.add(ref.num)
            if ref.num in streams:
                continue
            if ref.num in packed:
                text, at = packed[ref.num]
                value = self._parse(text, at)
            else:
                value = self.resolve(ref)
            if isinstance(value, list | dict):
                pending.extend(refs_in(value))
        return found

    def _content_refs(self, text: bytes) -> Iterator[Ref]:
        for match in CONTENT_KEY.finditer(text):
            if decode_name(match.group()[1:]) in _CONTENT_KEYS:
                yield from refs_in(self._parse_value(text, match.end()))

    def _parse(self, text: bytes, at: int) -> object:
        try:
            return parse_object(text, at, len(text), self.work)[0]
        except Malformed:
            return None

    def _parse_value(self, text: bytes, at: int) -> object:
        try:
            return parse_value(text, at, len(text), self.work)
        except Malformed:
            return None

    def _object_stream(self, stream: _Stream, limit: int) -> tuple[bytes, dict[int, int]]:
        """The decoded text (at most `limit` bytes) and where each object starts in it."""
        decoded = bytearray()
        for chunk in self.decode(stream, lambda chunks: chunks):
            decoded += chunk
            if len(decoded) > limit:
                break
        text = bytes(decoded)
        self.work.left += len(text)
        first = stream.info.get("First")
        if not isinstance(first, int) or not 0 <= first <= len(text):
            return text, {}
        numbers = [int(n) for n in _INTS.findall(text, 0, first)]
        return text, {n: first + at for n, at in zip(numbers[::2], numbers[1::2], strict=False)}


def _ends_before(data: bytes, header: int, at: int) -> bool:
    """A cheap no: an `endobj` keyword, with no string or comment before it that could hold
    it, ends the object at `header` before the `stream` keyword at `at`. Strings without
    parentheses or escapes inside (titles, font /CharSet) cannot hold it."""
    end = data.find(b"endobj", header, at)
    if end < 0 or data[end - 1 : end] not in _BEFORE_KEYWORD:
        return False
    if data.find(b"(", header, end) < 0 and data.find(b"%", header, end) < 0:
        return True
    # The regex walks bytewise: long objects (an image in a string) are left to the parser.
    return end - header <= 4096 and matched(_PLAIN_STRINGS.match(data, header, end)).end() == end


def _data_start(data: bytes, after_keyword: int) -> int:
    if data.startswith(b"\r\n", after_keyword):
        return after_keyword + 2
    return after_keyword + (data[after_keyword : after_keyword + 1] in (b"\r", b"\n"))
