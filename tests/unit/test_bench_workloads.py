"""The benchmarks' workloads (bench/workloads.py) and the soak's summaries (bench/bench_soak.py):
the distinct workload's text really differs, chunk by chunk, and "flat" is a slope."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from accessa.text import normalize_markdown
from bench.bench_soak import trend
from bench.run import goals
from bench.workloads import commits_per_document, copies, distinct, policy_pages
from consumers.chunker.chunking import chunk_markdown
from consumers.parser.local import parse_pdf


def test_distinct_policies_share_no_chunk_text_and_are_generated_once(tmp_path: Path) -> None:
    uploads = distinct(tmp_path, 10, users=3)
    assert [u for u, _, _ in uploads] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert [parse_pdf(p.read_bytes()).pages for _, _, p in uploads] == [
        policy_pages(i) for i in range(10)
    ]
    chunks = [
        c.content_sha256
        for _, _, path in uploads
        for c in chunk_markdown(
            normalize_markdown(parse_pdf(path.read_bytes()).markdown), document_id=uuid.uuid4()
        )
    ]
    assert len(chunks) >= 10
    assert len(set(chunks)) == len(chunks)  # no text for the cache or HNSW to fold together
    # Another block is other seeds; the same block again reuses the files.
    assert not {p for *_, p in distinct(tmp_path, 10, 3, block=1)} & {p for *_, p in uploads}
    stamps = {p: p.stat().st_mtime_ns for *_, p in uploads}
    assert {p: p.stat().st_mtime_ns for *_, p in distinct(tmp_path, 10, 3)} == stamps


def test_copies_are_every_file_once_per_user_and_bad_sizes_are_refused(tmp_path: Path) -> None:
    files = [tmp_path / "a.pdf", tmp_path / "b.pdf"]
    a, b = files
    assert copies(files, 2) == [(0, "a.pdf", a), (0, "b.pdf", b), (1, "a.pdf", a), (1, "b.pdf", b)]
    with pytest.raises(ValueError, match="between 0 and 100000"):
        distinct(tmp_path, -1, 2)


def test_commits_per_document_leaves_out_the_benchmarks_own_queries() -> None:
    out = commits_per_document({"xid": 100, "commits": 50}, {"xid": 400, "commits": 700}, 20, 50)
    assert (out["write_transactions_per_document"], out["transactions_per_document"]) == (15, 30)
    assert (
        commits_per_document({"xid": 1, "commits": 1}, {"xid": 1, "commits": 1}, 0, 0)[
            "transactions_per_document"
        ]
        is None
    )


def test_trend_is_the_slope_per_minute_over_the_second_half() -> None:
    # A ramp for the first 60 s, then 2 units a minute: the ramp is left out.
    points = [(float(t), t * 10.0 if t < 60 else 600 + (t - 60) / 30) for t in range(0, 241, 5)]
    summary = trend(points)
    assert summary["slope_per_min"] == pytest.approx(2.0)
    assert (summary["first"], summary["max"], summary["last"]) == (0.0, 606.0, 606.0)
    assert trend([(0.0, 5.0), (10.0, 5.0), (20.0, 5.0)])["slope_per_min"] == 0
    assert trend([])["slope_per_min"] is None


def test_issue_20_goals_need_the_peer_embedding_over_http() -> None:
    over_http = {"embedding": "OpenAIEmbedding over HTTP to the mock OpenAI server"}
    results = {
        "pipeline_over_peer": {"ratio": 0.8, "ratio_steady": 1.1},
        "pipeline_peer_llamaindex": over_http,
        "pipeline_over_peer_distinct": {"ratio": 1.5},
        "pipeline_peer_llamaindex_distinct": over_http,
    }
    g = goals(results)
    assert (
        g["pipeline_over_peer_copies_x32_steady"]["now"],
        g["pipeline_over_peer_copies_x32_steady"]["met"],
    ) == (1.1, True)
    assert (g["pipeline_over_peer_distinct"]["now"], g["pipeline_over_peer_distinct"]["met"]) == (
        1.5,
        False,
    )
    in_process = {**results, "pipeline_peer_llamaindex_distinct": {"embedding": "hashed"}}
    assert goals(in_process)["pipeline_over_peer_distinct"]["met"] is None
