"""CPU-only hot paths whose speed unit tests used to assert (issue 13): chunking a long
policy, and the parser on inputs built to make it work hard. No broker or database; each
figure is the best of `rounds`, the run least disturbed by a shared machine."""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from consumers.chunker.chunking import chunk_markdown
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import raw_pdf

_WORDS = [
    "the",
    "insured",
    "must",
    "notify",
    "us",
    "promptly",
    "of",
    "any",
    "loss",
    "under",
    "coverage",
    "limits",
    "deductible",
    "premium",
    "policy",
    "period",
    "endorsement",
    "exclusion",
    "dwelling",
    "liability",
]


def _best(work: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def _policy_markdown(pages: int, seed: int = 1) -> str:
    """Parser-shaped markdown: page markers, a heading every 5 pages, 3 paragraphs a page."""
    rng = random.Random(seed)
    parts = ["# Policy"]
    for page in range(1, pages + 1):
        parts.append(f"<!-- page {page} -->")
        if page % 5 == 1:
            parts.append(f"## Part {page // 5 + 1}")
        for _ in range(3):
            text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 160)))
            parts.append(". ".join(p.capitalize() for p in text.split(" the ")) + ".")
    return "\n\n".join(parts) + "\n"


def chunking(pages: int = 1200, rounds: int = 3) -> dict[str, Any]:
    """chunk_markdown on a 1200-page policy (>= 1000 chunks at the default target)."""
    markdown = _policy_markdown(pages)
    document_id = uuid.UUID(int=1)
    best, chunks = _best(lambda: chunk_markdown(markdown, document_id=document_id), rounds)
    return {
        "pages": pages,
        "chars": len(markdown),
        "chunks": len(chunks),
        "best_s": round(best, 3),
        "chunks_per_s": round(len(chunks) / best),
        "mb_per_s": round(len(markdown) / best / 1e6, 2),
        "goal": "< 0.5 s for >= 1000 chunks",
    }


def _one_page_pdf(pages_dict: bytes, content: bytes) -> bytes:
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        pages_dict,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    )


def parser_hostile(rounds: int = 3) -> dict[str, Any]:
    """parse_pdf on a page tree declaring 10^8 pages (one real) and on a content stream
    nested 200,000 arrays deep: neither may make work in proportion to what it claims."""
    text = b"BT /F1 12 Tf 72 700 Td (Hi) Tj ET "
    cases = {
        "declared_100m_pages": _one_page_pdf(
            b"<< /Type /Pages /Kids [3 0 R] /Count 100000000 >>", text
        ),
        "nested_200k_arrays": _one_page_pdf(
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            text + b"[" * 200_000 + b"]" * 200_000,
        ),
    }
    out: dict[str, Any] = {}
    for name, data in cases.items():
        best, parsed = _best(functools.partial(parse_pdf, data), rounds)
        out[name] = {"pages": parsed.pages, "best_s": round(best, 3)}
    out["goal"] = "< 2 s each"
    return out
