"""Canonical form of parsed markdown, so equal documents hash equal whichever parser ran."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_LINE_ENDINGS = re.compile(r"\r\n?")
# C0/C1 controls except \t and \n, DEL, lone surrogates and the U+FFFE/U+FFFF non-characters.
_UNWANTED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Each pattern below is tried at every position: a leading run starts only where its run does
# (lookbehind) or stays on its own line, or a long run is rescanned from each of its characters.
_TRAILING_SPACE = re.compile(r"(?<![ \t\u00a0])[ \t\u00a0]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_PAGE_MARKERS = re.compile(
    r"^[^\S\n]*<!--\s*page\s+\d+(?:\s+ocr\s+confidence=[\d.]+)?\s*-->\s*$",
    re.MULTILINE | re.IGNORECASE,
)


def normalize_markdown(md: str) -> str:
    """NFC, LF line ends, no control characters or trailing spaces, at most two blank lines
    in a row, and exactly one trailing newline ("" stays "")."""
    text = _LINE_ENDINGS.sub("\n", md)
    text = _UNWANTED.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_RUNS.sub("\n\n\n", text).strip("\n")
    return f"{text}\n" if text.strip() else ""


def has_text(md: str) -> bool:
    """True when `md` holds something besides page markers and whitespace."""
    return bool(_PAGE_MARKERS.sub("", md).strip())


def sha256_text(md: str) -> str:
    """Hex SHA-256 of the UTF-8 bytes of `md`."""
    return hashlib.sha256(md.encode("utf-8", "surrogatepass")).hexdigest()
