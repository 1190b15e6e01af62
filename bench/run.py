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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accessa.config import get_settings
from accessa.db import create_pool, migrate
from accessa.infra.kafka import LocalKafka
from accessa.infra.postgres import LocalPostgres

RESULTS = Path(__file__).with_name("results.json")


def save(results: dict[str, Any]) -> None:
    """Merge into bench/results.json (after every benchmark, so a failure loses nothing)."""
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update(results)
    previous["_meta"] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "python": platform.python_version(),
        "command": "make bench",
    }
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")


async def _main(only: set[str] | None) -> dict[str, Any]:
    import tempfile

    from bench import (
        bench_api,
        bench_hnsw,
        bench_pipeline,
        bench_runtime,
        bench_scaling,
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
            results["hnsw_commit"] = await bench_hnsw.run(pool)
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
        if not only or "pipeline" in only:
            with (
                tempfile.TemporaryDirectory() as a,
                tempfile.TemporaryDirectory() as b,
                tempfile.TemporaryDirectory() as c,
            ):
                e2e = await bench_pipeline.end_to_end(settings, Path(a))
                base = await bench_pipeline.baseline(settings, Path(b))
                two = await bench_pipeline.end_to_end(settings, Path(c), parsers=2, big=False)
            results["pipeline_e2e"] = e2e
            results["pipeline_baseline"] = base
            results["pipeline_e2e_2_parsers"] = two
            results["pipeline_over_baseline"] = {
                "ratio": round(e2e["docs_per_s"] / base["docs_per_s"], 3),
                "ratio_2_parsers": round(two["docs_per_s"] / base["docs_per_s"], 3),
                "goal": ">= 0.8",
            }
            save(results)
        if not only or "scaling" in only:
            with tempfile.TemporaryDirectory() as home:
                results["embedder_scaling"] = await bench_scaling.run(settings, Path(home))
            save(results)
    finally:
        await pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    args = parser.parse_args()
    settings = get_settings()
    if settings.embedded_postgres:
        LocalPostgres(settings).up()
    if settings.embedded_kafka:
        LocalKafka(settings).up()
    results = asyncio.run(_main(set(args.only) if args.only else None))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
