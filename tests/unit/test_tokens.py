"""accessa.tokens: exact cl100k_base counts offline, and token-bounded splitting."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import random
from pathlib import Path

import pytest
import tiktoken

from accessa.tokens import MAX_EMBED_TOKENS, count_tokens, decode, encode, split_by_tokens
from tests.utils import CORPUS

# The SHA-256 that tiktoken pins for https://openaipublic.blob.core.windows.net/encodings/
# cl100k_base.tiktoken (tiktoken_ext/openai_public.py).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def _bundled_vocabulary() -> bytes:
    # Located without importing bpe_openai, whose __init__ parses every vocabulary.
    package = importlib.util.find_spec("bpe_openai")
    assert package is not None and package.submodule_search_locations is not None
    folder = Path(next(iter(package.submodule_search_locations)))
    return gzip.decompress((folder / "data" / "cl100k_base.tiktoken.gz").read_bytes())


def _samples() -> list[str]:
    rng = random.Random(7)
    alphabet = "abc XYZ 0123 \n\t\r.,;'\"-\u2013\u2014éüß東京🙂مرحبا\u200b\u0301'sllve"
    texts = ["hello world", "  leading", "trailing   ", "\n\n\n", "naïve café 東京 🙂 مرحبا"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(500)]
    return texts


def test_hello_world_is_the_two_known_cl100k_tokens():
    assert encode("hello world") == [15339, 1917]
    assert count_tokens("hello world") == 2


def test_bundled_vocabulary_is_openais_cl100k_file_byte_for_byte():
    assert hashlib.sha256(_bundled_vocabulary()).hexdigest() == CL100K_SHA256


def test_ids_equal_tiktokens_reference_bpe_on_the_same_vocabulary():
    ranks = {}
    for line in _bundled_vocabulary().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    reference = tiktoken.Encoding(
        "cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )
    for text in _samples():
        assert encode(text) == reference.encode_ordinary(text), repr(text)
        assert count_tokens(text) == len(reference.encode_ordinary(text))


def test_encode_then_decode_returns_the_text():
    for text in _samples():
        assert decode(encode(text)) == text
        assert count_tokens(text) == len(encode(text))


def test_special_token_strings_are_counted_as_plain_text():
    assert count_tokens("<|endoftext|>") > 1


def test_lone_surrogates_are_counted_instead_of_raising():
    assert count_tokens("a\ud800b") == count_tokens("a\ufffdb")


def test_texts_far_beyond_one_request_are_counted():
    assert count_tokens("word " * 300_000) == 300_001  # "word", 299,999 x " word", " "


def test_split_pieces_fit_the_budget_and_join_back_to_the_text():
    text = "Coverage A applies. " * 500 + "東京🙂 " * 400 + "x" * 5000
    pieces = split_by_tokens(text, 100)
    assert "".join(pieces) == text
    assert all(count_tokens(piece) <= 100 for piece in pieces)
    assert len(pieces) >= count_tokens(text) // 100


def test_split_cuts_before_whitespace_when_it_can():
    pieces = split_by_tokens("insured property " * 400, 50)
    assert all(piece.startswith(" ") for piece in pieces[1:])


def test_split_returns_short_text_whole_and_empty_text_as_nothing():
    assert split_by_tokens("short text", 50) == ["short text"]
    assert split_by_tokens("", 50) == []


def test_split_refuses_budgets_smaller_than_one_character_can_need():
    with pytest.raises(ValueError):
        split_by_tokens("text", 3)


def test_embedding_limit_is_one_below_8192():
    assert MAX_EMBED_TOKENS == 8191


def test_corpus_text_round_trips():
    pypdfium2 = pytest.importorskip("pypdfium2")
    document = pypdfium2.PdfDocument(str(CORPUS / "pdflatex-4-pages.pdf"))
    text = "\n".join(page.get_textpage().get_text_range() for page in document)
    document.close()
    assert decode(encode(text)) == text
    assert 2_000 < count_tokens(text) < len(text.encode())
