"""Tracing's cost (issue 15), with tracing on at 100 % sampling exporting over the real
OTLP/HTTP exporter to a local receiver:

- on the stage runtime: the no-op stage's throughput off and on (the worst case: the spans are
  all the work there is besides Kafka);
- end to end (`make bench --only tracing`): the whole pipeline off and on, interleaved rounds,
  and what the tracing-off path costs per record against the pipeline's CPU per document.

    ACCESSA_HOME=... .venv/bin/python -m bench.bench_tracing   # no-op stage -> bench/tracing.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from accessa import tracing
from accessa.config import Settings, get_settings
from accessa.db import create_pool
from accessa.migrate import migrate
from accessa.topics import ensure_topics
from accessa.tracing import end_when_acked, producing
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


@contextlib.contextmanager
def receiver_endpoint() -> Iterator[str]:
    """An OTLP/HTTP receiver in a process of its own (decoding protobuf in the measured
    process would tax it); yields its base URL."""
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert receiver.stdout is not None
        yield receiver.stdout.readline().strip()
    finally:
        receiver.terminate()
        receiver.wait()


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
    with receiver_endpoint() as endpoint:
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


def off_path_us(n: int = 200_000) -> float:
    """Microseconds per record that the runtime's tracing calls cost with tracing off: the
    `enabled()` check around processing, and `producing` + `end_when_acked` per record sent."""
    headers = {"x-event-id": "e", "x-document-id": "d"}
    started = time.perf_counter()
    for _ in range(n):
        tracing.enabled()
        end_when_acked(producing("t", b"k", headers, client_id="c"), None)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / n * 1e6


async def end_to_end(settings: Settings, rounds: int = 3) -> dict[str, Any]:
    """The whole pipeline (API + 4 stage processes, corpus x8) with tracing off and on at
    100 % sampling to a local OTLP receiver, rounds interleaved; best round of each compared."""
    from bench import bench_pipeline

    assert not tracing.endpoint(settings), "run with tracing off: the bench turns it on itself"
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu_per_doc_s: list[float] = []
    var = "ACCESSA_OTEL_EXPORTER_OTLP_ENDPOINT"
    with receiver_endpoint() as endpoint:
        try:
            for _ in range(rounds):
                for side in ("off", "on"):
                    if side == "on":  # the stage processes inherit this environment
                        os.environ[var] = endpoint
                    with tempfile.TemporaryDirectory() as home:
                        run = await bench_pipeline.end_to_end(settings, Path(home), big=False)
                    os.environ.pop(var, None)
                    rates[side].append(run["docs_per_s"])
                    if side == "off":
                        cpu_per_doc_s.append(sum(run["cpu_s"].values()) / run["completed"])
        finally:
            os.environ.pop(var, None)
    per_record_us = off_path_us()
    # Per document: the API's send, then each stage's process and send (5 sends, 4 processes).
    off_share = 5 * per_record_us / (min(cpu_per_doc_s) * 1e6)
    return {
        "docs_per_s_rounds": rates,
        "on_over_off": round(max(rates["on"]) / max(rates["off"]), 3),
        "off_path_us_per_record": round(per_record_us, 3),
        "off_path_share_of_cpu_per_doc": f"{off_share:.5%}",
        "cpu_s_per_doc_off": round(min(cpu_per_doc_s), 4),
        "goal": "off < 2 % (vs no tracing code); on: reported",
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=1))
