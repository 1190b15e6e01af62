"""The PDF stream filters pdfium decodes to read a page, as chunked decoders: each stage hands
on at most about one chunk at a time, so a chain never holds more than a few chunks however
far the stream expands. Image codecs (DCT, JPX, JBIG2, CCITT, unknown names) end the chain,
as they do in pdfium, which leaves image data encoded until it renders."""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable, Iterable, Iterator

from accessa.pdf.syntax import matched

CHUNK = 1 << 20
_NOT_HEX = re.compile(rb"[^0-9A-Fa-f]")
_NOT_A85 = re.compile(rb"[^!-uz]")
_A85_GROUPS = re.compile(rb"(?:z|[!-u]{5})*")

Chunks = Iterable[bytes | memoryview]


def flate(chunks: Chunks, parms: dict) -> Iterator[bytes]:
    """zlib data; like pdfium, output up to a corrupt byte still counts."""
    inflater = zlib.decompressobj()
    for chunk in chunks:
        pending: bytes | memoryview = chunk
        while True:
            try:
                out = inflater.decompress(pending, CHUNK)
            except zlib.error:
                return
            if out:
                yield out
            if inflater.eof:
                return
            pending = inflater.unconsumed_tail
            if not pending and len(out) < CHUNK:
                break


def lzw(chunks: Chunks, parms: dict) -> Iterator[bytes]:
    early = 0 if parms.get("EarlyChange") == 0 else 1
    table = [bytes([i]) for i in range(256)] + [b"", b""]
    width, acc, bits = 9, 0, 0
    previous: bytes | None = None
    out = bytearray()
    for chunk in chunks:
        for byte in bytes(chunk):
            acc, bits = (acc << 8) | byte, bits + 8
            while bits >= width:
                bits -= width
                code = (acc >> bits) & ((1 << width) - 1)
                acc &= (1 << bits) - 1
                if code == 256:
                    del table[258:]
                    width, previous = 9, None
                    continue
                if code == 257:
                    yield bytes(out)
                    return
                if code < len(table):
                    entry = table[code]
                    if previous is not None and len(table) < 4096:
                        table.append(previous + entry[:1])
                elif code == len(table) and previous is not None:
                    entry = previous + previous[:1]
                    table.append(entry)
                else:
                    yield bytes(out)
                    return
                out += entry
                previous = entry
                if len(table) + early >= 1 << width and width < 12:
                    width += 1
                if len(out) >= CHUNK:
                    yield bytes(out)
                    out.clear()
    yield bytes(out)


def ascii_hex(chunks: Chunks, parms: dict) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        text = bytes(chunk)
        end = text.find(b">")
        text = carry + _NOT_HEX.sub(b"", text if end < 0 else text[:end])
        cut = len(text) & ~1
        carry = text[cut:]
        yield binascii.unhexlify(text[:cut])
        if end >= 0:
            break
    if carry:
        yield binascii.unhexlify(carry + b"0")


def ascii85(chunks: Chunks, parms: dict) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        text = bytes(chunk)
        end = text.find(b"~")
        text = carry + _NOT_A85.sub(b"", text if end < 0 else text[:end])
        cut = matched(_A85_GROUPS.match(text)).end()
        carry = text[cut:]
        try:
            yield base64.a85decode(text[:cut])  # at most 4 bytes a character (`z`)
        except ValueError:
            return
        if end >= 0:
            break
    if len(carry) > 1:
        try:
            yield base64.a85decode(carry)
        except ValueError:
            return


def run_length(chunks: Chunks, parms: dict) -> Iterator[bytes]:
    buffer = b""
    out = bytearray()
    for chunk in chunks:
        buffer += bytes(chunk)
        i, n = 0, len(buffer)
        while i < n:
            length = buffer[i]
            if length == 128:
                yield bytes(out)
                return
            if length < 128:
                if i + length + 2 > n:
                    break
                out += buffer[i + 1 : i + length + 2]
                i += length + 2
            else:
                if i + 2 > n:
                    break
                out += buffer[i + 1 : i + 2] * (257 - length)
                i += 2
            if len(out) >= CHUNK:
                yield bytes(out)
                out.clear()
        buffer = buffer[i:]
    yield bytes(out)


Decoder = Callable[[Chunks, dict], Iterator[bytes]]
DECODERS: dict[str, Decoder] = {
    "FlateDecode": flate,
    "Fl": flate,
    "LZWDecode": lzw,
    "LZW": lzw,
    "ASCIIHexDecode": ascii_hex,
    "AHx": ascii_hex,
    "ASCII85Decode": ascii85,
    "A85": ascii85,
    "RunLengthDecode": run_length,
    "RL": run_length,
}


def chunks_of(raw: memoryview) -> Iterator[memoryview]:
    for start in range(0, len(raw), CHUNK):
        yield raw[start : start + CHUNK]
