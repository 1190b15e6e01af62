"""The mock OpenAI server's vectors: deterministic, unit length, the asked size, distinct."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from mocks.openai_server import mock_vector


def test_same_text_same_vector() -> None:
    assert np.array_equal(mock_vector("Deductible: $500"), mock_vector("Deductible: $500"))


@pytest.mark.parametrize("dims", [8, 256, 1536, 3072])
def test_unit_norm_and_size(dims: int) -> None:
    vec = mock_vector("coverage limits", dims=dims)
    assert vec.shape == (dims,)
    assert np.linalg.norm(vec) == pytest.approx(1.0)


def test_distinct_texts_and_models_differ() -> None:
    a, b = mock_vector("policy A"), mock_vector("policy B")
    other_model = mock_vector("policy A", model="text-embedding-3-large", dims=1536)
    assert float(a @ b) < 0.95
    assert abs(float(a @ other_model)) < 0.2  # 1536-d vectors with nothing shared


def test_texts_sharing_words_are_closer_than_unrelated_texts() -> None:
    clause = mock_vector("The deductible for water damage is 500 dollars per claim.")
    query = mock_vector("water damage deductible")
    unrelated = mock_vector("Endorsement 7 adds earthquake cover")
    assert float(clause @ query) > 0.3
    assert abs(float(clause @ unrelated)) < 0.1


def test_not_a_constant() -> None:
    vec = mock_vector("x")
    assert len(set(vec.round(6).tolist())) > 1000


@pytest.mark.parametrize(
    ("text", "digest"),
    [
        ("The deductible for water damage is 500 dollars per claim.", "9d0749a5fd336f85"),
        ("Coverage: $1,000,000 per occurrence; aggregate $2,000,000.", "df00d8d033ca8ddf"),
        ("", "6f434515b140c73d"),
    ],
)
def test_vectors_are_bit_for_bit_those_of_earlier_runs(text: str, digest: str) -> None:
    """Benchmarks and `make eval` compare runs over these vectors: a faster mock must return
    the same bytes (digests taken from the word-by-word implementation before the cache)."""
    assert hashlib.sha256(mock_vector(text).tobytes()).hexdigest()[:16] == digest
