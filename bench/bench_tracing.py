"""Tracing's cost on the stage runtime (issue 15): the no-op stage's throughput with tracing
off, and on at 100 % sampling exporting over the real OTLP/HTTP exporter to a local receiver.
A no-op handler is the worst case: the spans are all the work there is besides Kafka.

    ACCESSA_HOME=... .venv/bin/python -m bench.bench_tracing   # writes bench/tracing.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from accessa import tracing
from accessa.config import Settings, get_settings
from accessa.db import create_pool, migrate
from accessa.infra.topics import ensure_topics
from bench.bench_runtime import fill, runtime_loop

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "tracing.json"
RECEIVER = """
import threading
from tests.otlp_receiver import OtlpReceiver
rx = OtlpReceiver().__enter__()
print(rx.endpoint, flush=True)
threading.Event().wait()
"""


async def once(settings: Settings, pool: Any, n: int) -> float:
    s = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}-"})
    await ensure_topics(s)
    await fill(s, f"{s.topic_prefix}uploaded", n)
    return await runtime_loop(s, pool, n)


async def main(n: int = 10_000, rounds: int = 3) -> dict[str, Any]:
    settings = get_settings()
    await migrate(settings)
    pool = await create_pool(settings, max_size=8)
    off: list[float] = []
    on: list[float] = []
    # The receiver in a process of its own: decoding protobuf here would tax the stage.
    receiver = subprocess.Popen(  # noqa: ASYNC220 (setup, before anything is measured)
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert receiver.stdout is not None
        endpoint = receiver.stdout.readline().strip()
        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
        )
        try:
            for _ in range(rounds):  # interleaved, so drift hits both alike
                tracing.use_provider(None)
                off.append(await once(settings, pool, n))
                tracing.use_provider(provider)
                on.append(await once(settings, pool, n))
            provider.force_flush(30_000)
        finally:
            tracing.use_provider(None)
            await pool.close()
    finally:
        receiver.terminate()
        receiver.wait()
    result = {
        "messages": n,
        "rounds": rounds,
        "off_msgs_per_s": [round(x, 1) for x in off],
        "on_msgs_per_s": [round(x, 1) for x in on],
        "on_over_off": round(statistics.median(on) / statistics.median(off), 3),
        "note": "no-op stage, 100 % sampling: 2 spans per record (process + send)",
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=1))
