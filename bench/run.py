"""`make bench`: run every benchmark against real local infrastructure, write results.json.

Ratios compare two measurements taken in the same run on the same machine, because absolute
times on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accessa.config import Settings, get_settings
from accessa.db import create_pool
from accessa.devstack.kafka import LocalKafka
from accessa.devstack.postgres import LocalPostgres
from accessa.migrate import migrate

RESULTS = Path(__file__).with_name("results.json")


# The figures the performance issue (#14) started from, measured another day: shown beside
# today's, never divided by them.
BEFORE = {
    "pipeline_over_peer": "0.71 (corpus x8)",
    "pipeline_over_baseline": "0.71 (the baseline embedded ~8x more texts)",
    "runtime_over_raw": "0.64-0.81 (stateless no-op: no dedup)",
    "postgres_cpu_per_1000_chunks": "the vector-index path (measured below as 1.0x)",
    "idle_latency_p50_ms": "197-677 (stage_times, 7 uploads)",
    # Issue 20's goals table (its "today" figures).
    "pipeline_over_peer_copies_x32_steady": "0.84 (peer embedding through the mock over HTTP)",
    "pipeline_over_peer_distinct": "1.43 (768 distinct policies, peer over HTTP)",
    "postgres_cpu_segments_over_incremental": "1.0 (every chunk inserted into one HNSW index)",
    "search_p95_ms_user_25pct": "970 ms p50 before the exact/index split (one index)",
    "search_p95_ms_user_1pct": "not measured over segments",
    "idle_latency_p95_ms": "142 (issue 20's last run)",
    "soak_flat": "not measured (issue 20 item 5 is new)",
}

# The soak is flat when total lag grows by under 2 % of the offered documents a minute, no
# stage's PSS by more than 2 MB a minute (the mocks stand in for third parties: not judged),
# and the growing segment never holds more than 1.5 seals' worth of rows.
SOAK_LAG_SHARE, SOAK_PSS_MB_PER_MIN, SOAK_GROWING_SEALS = 0.02, 2.0, 1.5


def goals(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The five goals of the performance issue, each from its benchmark in `results`."""
    out: dict[str, dict[str, Any]] = {}

    def goal(name: str, now: Any, target: str, met: bool | None, source: str) -> None:
        out[name] = {"before": BEFORE[name], "now": now, "goal": target, "met": met, "from": source}

    for side, target, floor in (("peer", ">= 1.0 (stretch 1.3)", 1.0), ("baseline", ">= 0.9", 0.9)):
        ratio = (results.get(f"pipeline_over_{side}") or {}).get("ratio")
        goal(
            f"pipeline_over_{side}",
            ratio,
            target,
            None if ratio is None else ratio >= floor,
            f"pipeline_over_{side}",
        )
    runtime = results.get("runtime_noop") or {}
    ratio = runtime.get("runtime_over_raw")
    goal(
        "runtime_over_raw",
        ratio,
        ">= 0.9",
        None if ratio is None else ratio >= 0.9,
        "runtime_noop (stateful no-op)",
    )
    cost = results.get("postgres_cost_per_1000_chunks") or {}
    recall = results.get("vector_recall") or {}
    sets = sorted(
        (k for k in recall if k.startswith("clustered_")), key=lambda k: int(k.split("_")[1])
    )
    largest = recall[sets[-1]] if sets else {}
    if cost:
        goal(
            "postgres_cpu_per_1000_chunks",
            {
                "server_cpu_s": cost["vector_index"]["server_cpu_s"],
                "adopted_over_before": 1.0,
                "best_candidate": "binary_index",
                "candidate_over_before": cost["binary_over_vector"]["server_cpu_s"],
                "candidate_recall_at_10": (largest.get("binary_rerank") or {}).get("recall_at_10"),
                "recall_set": sets[-1] if sets else None,
            },
            "<= 0.5x with recall@10 >= 0.95",
            False,
            "postgres_cost_per_1000_chunks, vector_recall",
        )
    _issue20_goals(results, goal)
    woken = (results.get("idle_latency") or {}).get("woken") or {}
    for pct, limit in (("p50", 75), ("p95", 150)):
        ms = woken.get(f"upload_to_complete_{pct}_ms")
        goal(
            f"idle_latency_{pct}_ms",
            ms,
            f"< {limit} (issue 20)",
            None if ms is None else ms < limit,
            "idle_latency.woken",
        )
    _soak_goal(results, goal)
    return out


def _soak_goal(results: dict[str, Any], goal: Callable[..., None]) -> None:
    """Issue 20 item 5: lag, PSS and the growing segment flat at 80 % of the peak."""
    soak = results.get("soak") or {}
    if not soak.get("lag"):
        goal("soak_flat", None, "flat", None, "soak")
        return
    lag = soak["lag"]["total"]["slope_per_min"]
    pss_slope = max(
        (t["slope_per_min"] for p, t in soak["pss_mb"].items() if p != "mocks"), default=0.0
    )
    growing = soak.get("rows", {}).get("growing_segment", {}).get("max", 0)
    seal = get_settings().segment_seal_rows
    now = {
        "rate_docs_per_s": soak["rate_docs_per_s"],
        "sustained_docs_per_s": soak.get("sustained_docs_per_s"),
        "lag_slope_per_min": lag,
        "max_pss_slope_mb_per_min": pss_slope,
        "growing_segment_max_rows": growing,
    }
    met = (
        soak["completed"] == soak["documents"]
        and lag <= SOAK_LAG_SHARE * soak["rate_docs_per_s"] * 60
        and pss_slope <= SOAK_PSS_MB_PER_MIN
        and growing <= SOAK_GROWING_SEALS * seal
    )
    goal("soak_flat", now, "lag, PSS, growing segment flat (bench/run.py SOAK_*)", met, "soak")


def _issue20_goals(results: dict[str, Any], goal: Callable[..., None]) -> None:
    """Issue 20's pipeline ÷ peer rows: the copies x32 at steady state, and the distinct-text
    workload; both need the peer to have embedded over HTTP, as our embedder does."""
    over_http = "over HTTP" in (results.get("pipeline_peer_llamaindex") or {}).get("embedding", "")
    copies = results.get("pipeline_over_peer") or {}
    ratio = copies.get("ratio_steady") if over_http else None
    goal(
        "pipeline_over_peer_copies_x32_steady",
        ratio,
        ">= 1.0",
        None if ratio is None else ratio >= 1.0,
        "pipeline_over_peer.ratio_steady",
    )
    peer = results.get("pipeline_peer_llamaindex_distinct") or {}
    distinct = results.get("pipeline_over_peer_distinct") or {}
    ratio = distinct.get("ratio") if "over HTTP" in peer.get("embedding", "") else None
    goal(
        "pipeline_over_peer_distinct",
        ratio,
        ">= 2.0",
        None if ratio is None else ratio >= 2.0,
        "pipeline_over_peer_distinct.ratio",
    )
    cost = results.get("segments_cost_per_1000_chunks") or {}
    search = results.get("segments_search") or {}
    segmented = search.get("segments") or {}
    recall = min(
        (segmented.get(u) or {}).get("recall_at_10", 0.0) for u in ("user_25pct", "user_1pct")
    )
    ratio = cost.get("segments_over_incremental")
    goal(
        "postgres_cpu_segments_over_incremental",
        None
        if ratio is None
        else {
            "ratio": ratio,
            "recall_at_10": recall,
            "rows": search.get("segments", {}).get("rows"),
        },
        "<= 0.4, recall@10 >= 0.95",
        None if ratio is None else ratio <= 0.4 and recall >= 0.95,
        "segments_cost_per_1000_chunks, segments_search.segments",
    )
    for label, limit in (("user_25pct", 50), ("user_1pct", 10)):
        p95 = (segmented.get(label) or {}).get("p95_ms")
        goal(
            f"search_p95_ms_{label}",
            None if p95 is None else {"p95_ms": p95, "rows": segmented.get("rows")},
            f"<= {limit} ms (issue 20: at 100k rows)",
            None if p95 is None else p95 <= limit,
            f"segments_search.segments.{label}",
        )


def save(results: dict[str, Any]) -> None:
    """Merge into bench/results.json (after every benchmark, so a failure loses nothing)."""
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update(results)
    previous["goals"] = goals(previous)
    meta = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "python": platform.python_version(),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "commit": _commit(),
    }
    previous["_meta"] = meta
    # Which run wrote each entry: after `--only`, the file mixes runs of different days.
    runs = previous.setdefault("_runs", {})
    runs.update({name: meta for name in results if not name.startswith("_")})
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


def _commit() -> str | None:
    """The checkout's commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return None
    return out.stdout.strip() or None


async def _main(
    only: set[str] | None,
    pgcost_rows: int = 20_000,
    segments_rows: int = 100_000,
    distinct_docs: int = 384,
    soak_s: float = 600,
    soak_peak: float | None = None,
) -> dict[str, Any]:
    from bench import (
        bench_api,
        bench_capacity,
        bench_hnsw,
        bench_hotpaths,
        bench_pgcost,
        bench_pipeline,
        bench_runtime,
        bench_scaling,
        bench_tracing,
        parser_compare,
    )

    settings = get_settings()
    await migrate(settings)
    pool = await create_pool(settings, max_size=8)
    results: dict[str, Any] = {}
    try:
        if not only or "runtime" in only:
            results["runtime_noop"] = await bench_runtime.run(settings, pool)
            save(results)
        if not only or "hnsw" in only:
            # Its scratch tables in a throwaway database: the ops login (`pool`) may create
            # nothing in the real one (migration 0017).
            async with bench_pgcost.database(settings, "bench_hnsw", size=8) as scratch:
                results["hnsw_commit"] = await bench_hnsw.run(scratch)
            save(results)
        if not only or "pgcost" in only:
            results.update(await bench_pgcost.run(settings, rows=pgcost_rows))
            save(results)
        if not only or "segments" in only:
            from bench import bench_segments

            results.update(await bench_segments.run(settings, rows=segments_rows))
            save(results)
        if not only or "api" in only:
            results["api_upload"] = await asyncio.to_thread(bench_api.run, settings)
            save(results)
        if not only or "parser" in only:
            results["parser_over_raw"] = await asyncio.to_thread(parser_compare.over_raw)
            save(results)
        if not only or "chunk" in only:
            results["chunk_and_buffer_1000"] = await bench_pipeline.chunk_and_buffer(settings)
            save(results)
        if not only or "hotpaths" in only:
            results["chunking_1200_pages"] = await asyncio.to_thread(bench_hotpaths.chunking)
            results["parser_hostile"] = await asyncio.to_thread(bench_hotpaths.parser_hostile)
            from bench import bench_codecs

            results["event_codecs"] = await asyncio.to_thread(bench_codecs.run)
            save(results)
        if not only or "pipeline" in only:
            results.update(await _pipeline(settings))
            save(results)
        if not only or "pipeline_distinct" in only:
            from bench import bench_distinct

            results.update(await bench_distinct.run(settings, docs=distinct_docs))
            save(results)
        if not only or "soak" in only:
            from bench import bench_soak

            # The whole burst's rate, not its steady window (bench_soak._peak says why).
            peak = soak_peak or (results.get("pipeline_e2e_distinct") or {}).get("docs_per_s")
            source = (
                "--soak-peak (another run's figure)" if soak_peak else "the same run's pipeline"
            )
            with tempfile.TemporaryDirectory() as home:
                results["soak"] = await bench_soak.run(
                    settings, Path(home), duration=soak_s, peak=peak, peak_from=source
                )
            save(results)
        if (not only or "security" in only) and settings.embedded_kafka:
            results["pipeline_sasl_ssl"] = await _security(settings)
            save(results)
        if not only or "tracing" in only:
            results["tracing_e2e"] = await bench_tracing.end_to_end(settings)
            save(results)
        if not only or "capacity" in only:
            results["capacity"] = await bench_capacity.run(settings)
            save(results)
        if not only or "latency" in only:
            from bench import bench_latency

            results["idle_latency"] = await bench_latency.run(settings)
            save(results)
        if not only or "scaling" in only:
            with tempfile.TemporaryDirectory() as home:
                results["embedder_scaling"] = await bench_scaling.run(settings, Path(home))
            save(results)
    finally:
        await pool.close()
    return results


# Every corpus file uploaded by each of 32 users = 768 documents a round (about a minute
# here): long enough for a steady state past the ramp-up. The 2-parser variant keeps 8 users.
PIPELINE_USERS = 32
TWO_PARSER_USERS = 8


async def _pipeline(settings: Settings, rounds: int = 3) -> dict[str, Any]:
    """End to end, the in-process baseline and the LlamaIndex peer (then end to end with 2
    parsers), interleaved over `rounds` so that a cold broker or a noisy neighbour does not land
    on one side only; each side's best round is compared (the fastest run is the one least
    disturbed by the machine). All three embed each distinct text once per round (a production
    embedder keeps its content cache, so the baseline uses the same cache and the peer
    IngestionPipeline's own), each side starting from an empty cache."""
    from bench import bench_pipeline, peer_llamaindex
    from bench.rounds import compare as compare_rounds

    runs: dict[str, list[dict[str, Any]]] = {
        "e2e": [],
        "baseline": [],
        "peer": [],
        "e2e_2_parsers": [],
    }
    await peer_llamaindex.reset(settings)
    try:
        for n in range(rounds):
            with tempfile.TemporaryDirectory() as home:
                runs["e2e"].append(
                    await bench_pipeline.end_to_end(
                        settings, Path(home), users=PIPELINE_USERS, big=n == 0, commits=n == 0
                    )
                )
            with tempfile.TemporaryDirectory() as home:
                runs["baseline"].append(
                    await bench_pipeline.baseline(settings, Path(home), users=PIPELINE_USERS)
                )
            with tempfile.TemporaryDirectory() as home:
                runs["peer"].append(
                    await peer_llamaindex.run(settings, Path(home), users=PIPELINE_USERS)
                )
            with tempfile.TemporaryDirectory() as home:
                runs["e2e_2_parsers"].append(
                    await bench_pipeline.end_to_end(
                        settings, Path(home), users=TWO_PARSER_USERS, parsers=2, big=False
                    )
                )
    finally:
        await peer_llamaindex.reset(settings)
    best, rates, over = compare_rounds(runs)

    return {
        "pipeline_e2e": {
            **best["e2e"],
            "big_pdf": runs["e2e"][0]["big_pdf"],
            "docs_per_s_rounds": rates["e2e"],
        },
        "pipeline_baseline": {**best["baseline"], "docs_per_s_rounds": rates["baseline"]},
        "pipeline_peer_llamaindex": {**best["peer"], "docs_per_s_rounds": rates["peer"]},
        "pipeline_e2e_2_parsers": {
            **best["e2e_2_parsers"],
            "docs_per_s_rounds": rates["e2e_2_parsers"],
        },
        "pipeline_over_baseline": {**over("baseline"), "goal": ">= 0.9"},
        "pipeline_over_peer": {**over("peer"), "goal": ">= 1.0 (stretch 1.3)"},
    }


async def _security(settings: Settings, rounds: int = 3) -> dict[str, Any]:
    """End to end on a SASL_SSL broker (SCRAM, TLS, ACLs) against the plaintext one: a second
    embedded broker of the same size beside it, rounds interleaved, best of each compared."""
    from bench import bench_pipeline

    secure = settings.model_copy(
        update={
            "home": settings.home / "bench-secure",
            # Same Postgres: its logins' passwords stay where the embedded server wrote them
            # (unpinned, they were looked for under the new home, and the API could not log in).
            "postgres_credentials": settings.postgres_credentials_file,
            "kafka_secure": True,
            "kafka_port": settings.kafka_port + 100,
            "kafka_controller_port": settings.kafka_controller_port + 100,
        }
    )
    kafka = LocalKafka(secure)
    started = await asyncio.to_thread(kafka.up)
    runs: dict[str, list[float]] = {"PLAINTEXT": [], "SASL_SSL": []}
    try:
        for _ in range(rounds):
            for name, side in (("PLAINTEXT", settings), ("SASL_SSL", secure)):
                with tempfile.TemporaryDirectory() as home:
                    run = await bench_pipeline.end_to_end(side, Path(home), big=False)
                runs[name].append(run["docs_per_s"])
    finally:
        if started:
            await asyncio.to_thread(kafka.down)
    return {
        "docs_per_s_rounds": runs,
        "ratio": round(max(runs["SASL_SSL"]) / max(runs["PLAINTEXT"]), 3),
        "goal": ">= 0.85",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    parser.add_argument(
        "--pgcost-rows",
        type=int,
        default=20_000,
        help="pgcost: rows of the larger recall and search-latency set (e.g. 100000)",
    )
    parser.add_argument(
        "--segments-rows",
        type=int,
        default=100_000,
        help="segments: rows of the search set (issue 20's goals are at 100000)",
    )
    parser.add_argument(
        "--distinct-docs",
        type=int,
        default=384,
        help="pipeline_distinct: generated policies per side and round",
    )
    parser.add_argument(
        "--soak-seconds", type=float, default=600, help="soak: seconds at 80%% of the peak"
    )
    parser.add_argument(
        "--soak-peak",
        type=float,
        help="soak: the peak docs/s to take 80%% of (default: this run's distinct pipeline, "
        "else a burst the soak measures)",
    )
    args = parser.parse_args()
    settings = get_settings()
    started: list[LocalPostgres | LocalKafka] = []
    for component, embedded in (
        (LocalPostgres(settings), settings.embedded_postgres),
        (LocalKafka(settings), settings.embedded_kafka),
    ):
        if embedded and component.up():
            started.append(component)
    try:
        only = set(args.only) if args.only else None
        results = asyncio.run(
            _main(
                only,
                args.pgcost_rows,
                args.segments_rows,
                args.distinct_docs,
                args.soak_seconds,
                args.soak_peak,
            )
        )
    finally:
        for component in reversed(started):  # leave the ports as we found them
            component.down()
    print(json.dumps(results, indent=2))
    print('\ngoals (bench/results.json "goals"):')
    for name, g in json.loads(RESULTS.read_text())["goals"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        print(f"  {name}: now {g['now']}, goal {g['goal']}, {met} (before: {g['before']})")


if __name__ == "__main__":
    main()
