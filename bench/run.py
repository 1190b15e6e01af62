"""`make bench`: run every benchmark against real local infrastructure, write results.json.

Ratios compare two measurements taken in the same run on the same machine, because absolute
times on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accessa.config import get_settings
from accessa.db import create_pool, migrate
from accessa.infra.kafka import LocalKafka
from accessa.infra.postgres import LocalPostgres

RESULTS = Path(__file__).with_name("results.json")


async def _main(only: set[str] | None) -> dict[str, Any]:
    from bench import bench_hnsw, bench_runtime

    settings = get_settings()
    await migrate(settings)
    pool = await create_pool(settings, max_size=8)
    results: dict[str, Any] = {}
    try:
        if not only or "runtime" in only:
            results["runtime_noop"] = await bench_runtime.run(settings, pool)
        if not only or "hnsw" in only:
            results["hnsw_commit"] = await bench_hnsw.run(pool)
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
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous.update(results)
    previous["_meta"] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} cores=2".strip(),
        "python": platform.python_version(),
    }
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
