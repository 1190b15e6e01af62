"""`make bench` reports the performance issue's goals from the benchmarks' own results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.run
from bench.run import goals


def test_each_goal_is_judged_from_its_benchmark_and_an_unmeasured_one_says_so() -> None:
    results = {
        "pipeline_over_peer": {"ratio": 1.05},
        "pipeline_over_baseline": {"ratio": 0.5},
        "runtime_noop": {"runtime_over_raw": 0.2},
        "idle_latency": {"woken": {"upload_to_complete_p50_ms": 151.0}},
    }
    g = goals(results)
    assert (g["pipeline_over_peer"]["now"], g["pipeline_over_peer"]["met"]) == (1.05, True)
    assert g["pipeline_over_baseline"]["met"] is False
    assert g["runtime_over_raw"]["met"] is False
    assert g["idle_latency_p50_ms"]["met"] is False
    assert "postgres_cpu_per_1000_chunks" not in g  # pgcost did not run
    assert goals({})["pipeline_over_peer"]["met"] is None


def test_the_postgres_goal_names_the_candidate_and_its_recall_on_the_largest_set() -> None:
    results = {
        "postgres_cost_per_1000_chunks": {
            "vector_index": {"server_cpu_s": 2.0},
            "binary_over_vector": {"server_cpu_s": 0.5},
        },
        "vector_recall": {
            "clustered_10000": {"binary_rerank": {"recall_at_10": 0.99}},
            "clustered_100000": {"binary_rerank": {"recall_at_10": 0.6}},
        },
    }
    now = goals(results)["postgres_cpu_per_1000_chunks"]["now"]
    assert (now["recall_set"], now["candidate_recall_at_10"]) == ("clustered_100000", 0.6)
    assert now["candidate_over_before"] == 0.5


def test_the_segments_goals_need_the_cost_ratio_the_recall_and_each_users_p95() -> None:
    search = {
        "rows": 100_000,
        "user_25pct": {"recall_at_10": 0.97, "p95_ms": 48.0},
        "user_1pct": {"recall_at_10": 0.94, "p95_ms": 9.0},
    }
    results = {
        "segments_cost_per_1000_chunks": {"segments_over_incremental": 0.3},
        "segments_search": {"segments": search},
        "idle_latency": {
            "woken": {"upload_to_complete_p50_ms": 70, "upload_to_complete_p95_ms": 160}
        },
    }
    g = goals(results)
    cost = g["postgres_cpu_segments_over_incremental"]
    assert cost["now"] == {"ratio": 0.3, "recall_at_10": 0.94, "rows": 100_000}
    assert cost["met"] is False  # cheap enough, but the small user's recall is below 0.95
    assert [g[f"search_p95_ms_{u}"]["met"] for u in ("user_25pct", "user_1pct")] == [True, True]
    assert [g[f"idle_latency_{p}_ms"]["met"] for p in ("p50", "p95")] == [True, False]
    assert goals({})["search_p95_ms_user_1pct"]["met"] is None


def test_results_say_which_run_wrote_each_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"api_upload": {"uploads_per_s": 90.0}}))
    monkeypatch.setattr(bench.run, "RESULTS", results)
    monkeypatch.setattr(sys, "argv", ["bench/run.py", "--only", "runtime"])
    bench.run.save({"runtime_noop": {"runtime_over_raw": 0.5}})
    saved = json.loads(results.read_text())
    assert saved["api_upload"] == {"uploads_per_s": 90.0}  # an earlier run's entry is kept
    assert set(saved["_runs"]) == {"runtime_noop"}  # and not claimed by this one
    assert saved["_runs"]["runtime_noop"]["command"] == "python -m bench.run --only runtime"
    assert saved["_runs"]["runtime_noop"]["at"] == saved["_meta"]["at"]


def _soak(
    lag_slope: float, pss_slope: float, growing_max: int, completed: int = 100
) -> dict[str, Any]:
    trend = {"first": 0, "last": 0, "max": 0}
    return {
        "rate_docs_per_s": 20.0,  # 1200 a minute: lag may grow by 24 a minute
        "documents": 100,
        "completed": completed,
        "lag": {"total": {**trend, "slope_per_min": lag_slope}},
        "pss_mb": {
            "parser": {**trend, "slope_per_min": pss_slope},
            "mocks": {**trend, "slope_per_min": 9.0},  # a stand-in for third parties: not judged
        },
        "rows": {"growing_segment": {**trend, "max": growing_max, "slope_per_min": 0.0}},
    }


def test_the_soak_is_flat_only_with_lag_memory_and_the_growing_segment_bounded() -> None:
    seal = bench.run.get_settings().segment_seal_rows

    def met(soak: dict[str, Any]) -> bool | None:
        return goals({"soak": soak})["soak_flat"]["met"]

    assert met(_soak(lag_slope=-5.0, pss_slope=1.0, growing_max=seal)) is True
    assert met(_soak(lag_slope=30.0, pss_slope=1.0, growing_max=seal)) is False  # lag grows
    assert met(_soak(lag_slope=0.0, pss_slope=2.5, growing_max=seal)) is False  # memory grows
    assert met(_soak(lag_slope=0.0, pss_slope=1.0, growing_max=2 * seal)) is False
    assert met(_soak(lag_slope=0.0, pss_slope=1.0, growing_max=seal, completed=99)) is False
    assert goals({})["soak_flat"]["met"] is None
