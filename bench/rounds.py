"""Interleaved rounds of several sides, compared: each side's best round against the pipeline's
(`e2e`), its steady-state rate, and the ratio round by round."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def compare(
    runs: dict[str, list[dict[str, Any]]],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]], Callable[[str], dict[str, Any]]]:
    """`runs[side]` is one result per round: each side's best round, its rates per round, and
    `over(side)`, the pipeline's ratio to that side."""
    best = {k: max(v, key=lambda r: r["docs_per_s"]) for k, v in runs.items()}
    rates = {k: [r["docs_per_s"] for r in v] for k, v in runs.items()}
    steady = {k: max((r["steady_docs_per_s"] or 0) for r in v) for k, v in runs.items()}

    def over(side: str) -> dict[str, Any]:
        return {
            "ratio": ratio(best["e2e"]["docs_per_s"], best[side]["docs_per_s"]),
            "ratio_steady": ratio(steady["e2e"], steady[side]),
            "ratio_per_round": [
                ratio(e, b) for e, b in zip(rates["e2e"], rates[side], strict=True)
            ],
        }

    return best, rates, over
