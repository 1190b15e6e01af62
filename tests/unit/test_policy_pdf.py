"""mocks.policy_pdf: deterministic, policy-like PDFs of a chosen page count and size."""

from __future__ import annotations

import pypdfium2
import pytest

from mocks.policy_pdf import make_policy_pdf, policy_phrase


def _pages_text(data: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(data)
    try:
        return [page.get_textpage().get_text_range() for page in document]
    finally:
        document.close()


def test_the_same_seed_gives_the_same_bytes():
    assert make_policy_pdf(seed=5) == make_policy_pdf(seed=5)


def test_different_seeds_give_different_policies():
    assert make_policy_pdf(seed=5) != make_policy_pdf(seed=6)


@pytest.mark.parametrize("pages", [1, 3, 8, 13])
def test_the_pdf_has_exactly_the_requested_pages(pages):
    assert len(_pages_text(make_policy_pdf(seed=1, pages=pages))) == pages


def test_the_first_page_is_a_declarations_page():
    first = _pages_text(make_policy_pdf(seed=2))[0]
    for label in ["Declarations", "Named Insured", "Policy Number", "Policy Period", "Insurer"]:
        assert label in first


def test_the_policy_has_coverages_exclusions_conditions_and_endorsements():
    text = "\n".join(_pages_text(make_policy_pdf(seed=2, pages=8)))
    for section in [
        "Limit of Liability",
        "Deductible",
        "Section II - Exclusions",
        "Section III - Conditions",
        "Endorsements",
        "Definitions",
    ]:
        assert section in text


def test_each_seed_has_a_phrase_only_its_policy_contains():
    phrases = {seed: policy_phrase(seed) for seed in range(5)}
    assert len(set(phrases.values())) == 5
    texts = {seed: " ".join(_pages_text(make_policy_pdf(seed=seed, pages=2))) for seed in phrases}
    for seed, phrase in phrases.items():
        assert [other for other, text in texts.items() if phrase in text] == [seed]


def test_target_bytes_pads_the_file_to_about_that_size():
    data = make_policy_pdf(seed=4, pages=20, target_bytes=2_000_000)
    assert 1_800_000 <= len(data) <= 2_200_000
    assert len(_pages_text(data)) == 20


def test_a_target_below_the_natural_size_changes_nothing():
    assert make_policy_pdf(seed=4, pages=3, target_bytes=10) == make_policy_pdf(seed=4, pages=3)


@pytest.mark.slow
def test_a_25_mb_300_page_policy_can_be_made():
    data = make_policy_pdf(seed=9, pages=300, target_bytes=25_000_000)
    assert 22_500_000 <= len(data) <= 27_500_000
    assert len(_pages_text(data)) == 300


def test_fewer_than_one_page_is_rejected():
    with pytest.raises(ValueError):
        make_policy_pdf(seed=1, pages=0)
