"""One document at a time on an idle pipeline (`--only latency`): upload → complete, and
where the time goes, from each job's own `stage_times`.

Small policies (1 to 3 pages) go through two fresh pipelines in the same run, side by side: the
outbox relay woken when a row commits (the default), and polling only
(`ACCESSA_OUTBOX_NOTIFY=false`), so the two can be compared. Each upload waits for its job's
live event stream to end before the next starts, after a random pause so that uploads land
at every phase of the relay's poll.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from accessa import jobs
from accessa.config import Settings
from accessa.db import create_pool
from accessa.ops.localrun import LocalPipeline
from mocks.policy_pdf import make_policy_pdf

GOAL = "p50 < 75 ms and p95 < 150 ms (issue 20)"
MAX_PAUSE_S = 0.5  # one whole default poll interval


def _pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def phases(stage_times: dict[str, str]) -> dict[str, float]:
    """Milliseconds between consecutive stage stamps, named `from->to`, in pipeline order.
    (A stamp is its transaction's start: `parsed` and `parse_validated` share one.)"""
    order = ["queued", *dict.fromkeys(label for label, _ in jobs.PROGRESS.values())]
    stamps = [(k, datetime.fromisoformat(stage_times[k])) for k in order if k in stage_times]
    return {
        f"{a}->{b}": (tb - ta).total_seconds() * 1000
        for (a, ta), (b, tb) in itertools.pairwise(stamps)
    }


async def _until_done(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once its live event stream ends (the stream's last event carries it)."""
    async with client.stream("GET", f"/api/v2/jobs/{job_id}/events") as response:
        response.raise_for_status()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "end":
                return json.loads(line.removeprefix("data: "))
    raise RuntimeError(f"the event stream of job {job_id} ended without its end event")


@dataclass
class _Side:
    """One pipeline of the comparison, and what its documents took."""

    pipe: LocalPipeline
    client: httpx.AsyncClient
    totals: list[float] = field(default_factory=list)
    clients: list[float] = field(default_factory=list)
    per_phase: dict[str, list[float]] = field(default_factory=dict)

    async def one(self, pdf: bytes, n: int) -> None:
        """Upload `pdf` and wait until its job completed; the first one is a warm-up (first
        connections, imports and caches) and not counted."""
        started = time.perf_counter()
        upload = {"file": (f"p{n}.pdf", pdf, "application/pdf")}
        r = await self.client.post("/api/v2/documents", files=upload)
        r.raise_for_status()
        job = await _until_done(self.client, r.json()["job_id"])
        elapsed = (time.perf_counter() - started) * 1000
        if job["status"] != "complete":
            raise RuntimeError(f"job {job['job_id']} ended {job['status']}")
        if n == 0:
            return
        steps = phases(job["stage_times"])
        self.clients.append(elapsed)
        self.totals.append(sum(steps.values()))
        for name, ms in steps.items():
            self.per_phase.setdefault(name, []).append(ms)

    def figures(self) -> dict[str, Any]:
        return {
            "upload_to_complete_p50_ms": _pct(self.totals, 50),
            "upload_to_complete_p95_ms": _pct(self.totals, 95),
            "upload_to_complete_max_ms": round(max(self.totals), 1),
            "client_p50_ms": _pct(self.clients, 50),
            "client_p95_ms": _pct(self.clients, 95),
            "phases_p50_ms": {k: _pct(v, 50) for k, v in self.per_phase.items()},
            "phases_p95_ms": {k: _pct(v, 95) for k, v in self.per_phase.items()},
        }


async def run(settings: Settings, documents: int = 40, seed: int = 14) -> dict[str, Any]:
    """`documents` uploads (after one warm-up) on each side, relay woken and poll only.

    Both pipelines run side by side (idle but for the one document in flight) and take turns,
    the first of each turn alternating, so that the machine's load drifts over both alike.
    Each side gets its own policies of the same page counts (they share the database, and so
    the embedding cache)."""
    rng = random.Random(seed)
    pages = [rng.randint(1, 3) for _ in range(documents + 1)]
    pdfs = {
        side: [
            make_policy_pdf(seed=seed * 1000 + k * 100 + n, pages=p) for n, p in enumerate(pages)
        ]
        for k, side in enumerate(("woken", "poll_only"))
    }
    pauses = [rng.uniform(0, MAX_PAUSE_S) for _ in range(2 * len(pages))]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        pipes = {
            "woken": await asyncio.to_thread(LocalPipeline.create, settings, Path(a)),
            "poll_only": await asyncio.to_thread(
                LocalPipeline.create, settings, Path(b), ACCESSA_OUTBOX_NOTIFY="false"
            ),
        }
        pool = await create_pool(settings, max_size=1)
        sides: dict[str, _Side] = {}
        try:
            await pool.execute("DELETE FROM embedding_cache")  # ops may not TRUNCATE (0017)
            for pipe in pipes.values():
                await asyncio.to_thread(pipe.start_all)
            sides = {name: _Side(pipe, pipe.client(uuid.uuid4())) for name, pipe in pipes.items()}
            for n in range(len(pages)):
                turn = list(sides) if n % 2 == 0 else list(reversed(sides))
                for k, name in enumerate(turn):
                    await asyncio.sleep(pauses[2 * n + k])  # idle: a random phase of the poll
                    await sides[name].one(pdfs[name][n], n)
        finally:
            for side in sides.values():
                await side.client.aclose()
            await pool.close()
            for pipe in pipes.values():
                await asyncio.to_thread(pipe.stop_all)
    woken, poll = sides["woken"].figures(), sides["poll_only"].figures()
    return {
        "documents": documents,
        "pages": f"{min(pages)}-{max(pages)}",
        "measured": "stage_times queued -> complete (server side); client: POST -> end event; "
        "both pipelines side by side, taking turns",
        "woken": woken,
        "poll_only": poll,
        "p50_poll_only_over_woken": round(
            poll["upload_to_complete_p50_ms"] / woken["upload_to_complete_p50_ms"], 2
        ),
        "goal": GOAL,
        "met": woken["upload_to_complete_p50_ms"] < 75 and woken["upload_to_complete_p95_ms"] < 150,
    }
