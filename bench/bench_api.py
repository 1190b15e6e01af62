"""Producer API upload throughput: a 1 MB PDF through POST /api/v2/documents.

Real uvicorn (`accessa run api` in a child process, outbox relay included), real Postgres
and Kafka, rate limits off, 16 concurrent clients. Reports uploads/s, client-side p50/p95
latency, how long after the last 202 the last `uploaded` event was published, and the API
process's CPU seconds per upload (psutil, from the start of the measured load until the outbox
has drained, so the relay's share is in it).

`python -m bench.bench_api --baseline DIR` also runs the API of another checkout of the code
(e.g. `git worktree add /tmp/api-old <commit>`), interleaved with this one in the same run,
and reports the CPU-per-upload ratio: the way to measure a change to the upload path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from pydantic import SecretStr

from accessa import kafka_clients
from accessa.auth import mint_token
from accessa.config import Settings, get_settings
from accessa.migrate import migrate
from accessa.topics import ensure_topics, topics_for
from mocks.policy_pdf import raw_pdf
from producer_api.validation import validate_pdf

MB = 1024 * 1024


def make_pdf(size: int = MB) -> bytes:
    """A valid one-page PDF of about `size` bytes: some text and an uncompressed grey image
    (random pixels, so nothing downstream can compress it away)."""
    side = int((size - 2048) ** 0.5)
    pixels = os.urandom(side * side)
    text = b"BT /F1 14 Tf 72 720 Td (Accessa benchmark policy: 1 MB upload) Tj ET\n"
    draw = text + b"q 200 0 0 200 72 400 cm /Im1 Do Q\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(draw), draw),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
        b" /BitsPerComponent 8 /Length %d >>\nstream\n%s\nendstream"
        % (side, side, len(pixels), pixels),
    ]
    return raw_pdf(*objects)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ACCESSA_* variables, for a child process."""
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"ACCESSA_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}")
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # start-up poll interval
    raise RuntimeError("the API did not become healthy")


async def _published(settings: Settings, timeout: float = 120) -> float:
    """Seconds until every outbox row of this run's topics is published."""
    conn = await asyncpg.connect(settings.dsn)
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            left = await conn.fetchval(
                "SELECT count(*) FROM upload_pipeline.outbox"
                " WHERE published_at IS NULL AND starts_with(topic, $1)",
                settings.topic_prefix,
            )
            if left == 0:
                return time.monotonic() - start
            await asyncio.sleep(0.05)  # poll interval
    finally:
        await conn.close()
    raise RuntimeError("the relay did not drain the outbox")


async def _load(url: str, token: str, payloads: list[bytes], concurrency: int) -> list[float]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}

    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=120, headers=headers
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                payload = queue.get_nowait()
                start = time.perf_counter()
                files = {"file": ("bench.pdf", payload, "application/pdf")}
                response = await client.post("/api/v2/documents", files=files)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 202:
                    raise RuntimeError(f"upload failed: {response.status_code} {response.text}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _prepare(settings: Settings) -> None:
    await migrate(settings)
    await ensure_topics(settings)


async def _drop_topics(settings: Settings) -> None:
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        await admin.delete_topics(topics_for(settings).all())
    finally:
        await admin.close()


def _cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of the process and its children so far."""
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def _measure(
    settings: Settings, proc: subprocess.Popen[bytes], payloads: list[bytes], concurrency: int
) -> tuple[list[float], float, float, float]:
    """(latencies, wall s of the load, s to drain the outbox after it, API CPU s of both)."""
    url = f"http://{settings.api_host}:{settings.api_port}"
    await _wait_healthy(url, proc)
    token = mint_token(settings, uuid.uuid4())
    await _load(url, token, payloads[:concurrency], concurrency)  # warm-up
    await _published(settings)
    api = psutil.Process(proc.pid)
    cpu_before = _cpu_s(api)
    start = time.perf_counter()
    latencies = await _load(url, token, payloads[concurrency:], concurrency)
    wall = time.perf_counter() - start
    drained = await _published(settings)
    return latencies, wall, drained, _cpu_s(api) - cpu_before


def run(
    settings: Settings, *, uploads: int = 400, concurrency: int = 16, tree: Path | None = None
) -> dict[str, Any]:
    """Benchmark figures for bench/results.json (key `api_upload`). `tree`: run the API of
    that checkout instead of this one (a baseline side)."""
    settings = settings.model_copy(
        update={
            "topic_prefix": f"bench{uuid.uuid4().hex[:6]}-",
            "rate_limits_enabled": False,
            "storage_dir": Path(tempfile.mkdtemp(prefix="accessa-bench-api-")),
            "api_port": _free_port(),
        }
    )
    asyncio.run(_prepare(settings))
    base = make_pdf(MB)
    validate_pdf(base)  # the payload must pass the API's own checks
    payloads = [base + f"%{uuid.uuid4()}\n".encode() for _ in range(uploads + concurrency)]
    env = {**os.environ, **settings_env(settings), "ACCESSA_LOG_LEVEL": "WARNING"}
    # `python -m` puts the working directory first on sys.path: `tree`'s packages win over ours.
    proc = subprocess.Popen(
        [sys.executable, "-m", "accessa.cli.main", "run", "api"], env=env, cwd=tree
    )
    try:
        latencies, wall, drained, cpu = asyncio.run(_measure(settings, proc, payloads, concurrency))
    finally:
        proc.terminate()
        proc.wait(60)
        asyncio.run(_drop_topics(settings))
    q = statistics.quantiles(latencies, n=100)
    return {
        "pdf_bytes": len(base),
        "uploads": uploads,
        "concurrency": concurrency,
        "uploads_per_s": round(uploads / wall, 1),
        "mb_per_s": round(uploads * len(base) / MB / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "outbox_drained_s_after_last_upload": round(drained, 2),
        "api_cpu_ms_per_upload": round(cpu / uploads * 1000, 2),
    }


def compare(
    settings: Settings, baseline: Path, *, rounds: int = 3, uploads: int = 400
) -> dict[str, Any]:
    """This checkout's API against `baseline`'s, interleaved (new, old, new, old, ...): each
    side's best CPU per upload and uploads/s, and new ÷ old."""
    sides: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
    for _ in range(rounds):
        sides["new"].append(run(settings, uploads=uploads))
        sides["old"].append(run(settings, uploads=uploads, tree=baseline))
    cpu = {k: min(r["api_cpu_ms_per_upload"] for r in v) for k, v in sides.items()}
    rate = {k: max(r["uploads_per_s"] for r in v) for k, v in sides.items()}
    return {
        "rounds": sides,
        "api_cpu_ms_per_upload": cpu,
        "uploads_per_s": rate,
        "cpu_new_over_old": round(cpu["new"] / cpu["old"], 3),
        "uploads_per_s_new_over_old": round(rate["new"] / rate["old"], 3),
    }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with, interleaved")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=400)
    args = parser.parse_args()
    if args.baseline:
        figures = compare(get_settings(), args.baseline, rounds=args.rounds, uploads=args.uploads)
        print(json.dumps({"api_upload_compare": figures}, indent=2))
    else:
        print(json.dumps({"api_upload": run(get_settings(), uploads=args.uploads)}, indent=2))
