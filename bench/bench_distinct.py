"""The pipeline, its baseline and the LlamaIndex peer on a workload whose text all differs
(`python -m bench.run --only pipeline_distinct`): the copies workload of `--only pipeline`
lets the embedding cache and HNSW's folding of duplicates hide the vector index's cost."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from accessa.config import Settings
from bench import bench_pipeline, peer_llamaindex, workloads
from bench.rounds import compare as compare_rounds


async def run(settings: Settings, docs: int, rounds: int = 2) -> dict[str, Any]:
    """End to end, the baseline and the peer on `docs` generated policies whose text all
    differs (bench/workloads.py), spread over 8 users, rounds interleaved as in bench/run.py's
    `_pipeline`. Each side and round uploads its own seeds (same page mix), so no index holds
    its texts already; the peer embeds over HTTP through the mock, as ours does. The
    end-to-end side also counts Postgres transactions per document."""
    sides = ("e2e", "baseline", "peer")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    cache = settings.home / "bench-policies"
    await peer_llamaindex.reset(settings)
    try:
        for n in range(rounds):
            for k, side in enumerate(sides):
                uploads = await asyncio.to_thread(
                    workloads.distinct, cache, docs, 8, block=n * len(sides) + k
                )
                with tempfile.TemporaryDirectory() as home:
                    if side == "e2e":
                        result = await bench_pipeline.end_to_end(
                            settings, Path(home), big=False, uploads=uploads, commits=True
                        )
                    elif side == "baseline":
                        result = await bench_pipeline.baseline(
                            settings, Path(home), uploads=uploads
                        )
                    else:
                        result = await peer_llamaindex.run(settings, Path(home), uploads=uploads)
                runs[side].append(result)
    finally:
        await peer_llamaindex.reset(settings)
    best, rates, over = compare_rounds(runs)

    workload = {"workload": f"{docs} distinct generated policies a side and round, 8 users"}
    return {
        "pipeline_e2e_distinct": {**workload, **best["e2e"], "docs_per_s_rounds": rates["e2e"]},
        "pipeline_baseline_distinct": {**best["baseline"], "docs_per_s_rounds": rates["baseline"]},
        "pipeline_peer_llamaindex_distinct": {**best["peer"], "docs_per_s_rounds": rates["peer"]},
        "pipeline_over_baseline_distinct": {**over("baseline"), "goal": ">= 0.9"},
        "pipeline_over_peer_distinct": {**over("peer"), "goal": ">= 2.0 (issue 20)"},
    }
