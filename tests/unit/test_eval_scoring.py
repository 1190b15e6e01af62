"""bench/eval.py's hit rule and metrics."""

from __future__ import annotations

from bench.eval import holds, score


def test_an_answer_matches_across_case_whitespace_and_markdown_but_only_at_word_bounds() -> None:
    assert holds("| A - Dwelling | **$715,000** |", "$715,000")
    assert holds("Claims: call 0345  600\n7281 today", "0345 600 7281")
    assert not holds("defined terms", "DEF")
    assert holds("ABC: DEF", "def")


def test_hit_rates_and_mrr_per_document_and_overall() -> None:
    questions = [
        {"document": "gen:a.pdf", "question": "a", "answer": "x1"},
        {"document": "b.pdf", "question": "b", "answer": "y"},
        {"document": "b.pdf", "question": "c", "answer": "z"},
    ]
    result = score(questions, [["x1"], ["n", "n", "y"], ["n"] * 5 + ["z"]])
    assert result["overall"] == {"questions": 3, "hit@1": 0.333, "hit@5": 0.667, "mrr": 0.444}
    assert result["per_document"]["a.pdf"]["mrr"] == 1.0
    assert len(result["misses"]) == 1
