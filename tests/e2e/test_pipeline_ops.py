"""What only the whole running pipeline can prove: search, metrics, the CLI, status and lag."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import httpx
import pytest

from accessa.ops.localrun import REPO, LocalPipeline
from mocks.policy_pdf import make_policy_pdf, policy_phrase
from tests.unit.test_observability import alert_exprs, dashboard_exprs, referenced
from tests.utils import CORPUS, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def cli(pipeline: LocalPipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "accessa.cli.main", *args],
        env=pipeline.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def upload_and_finish(pipeline: LocalPipeline, user: uuid.UUID, name: str, pdf: bytes):
    async with pipeline.client(user) as client:
        r = await client.post("/api/v2/documents", files={"file": (name, pdf, "application/pdf")})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        async def done() -> dict | None:
            job = (await client.get(f"/api/v2/jobs/{job_id}")).json()
            return job if job["state"] in ("done", "deadletter") else None

        return await wait_for(done, timeout=180, interval=0.5, what=f"job {job_id}")


def test_search_returns_the_chunk_holding_a_known_phrase_first(pipeline: LocalPipeline) -> None:
    user = uuid.uuid4()

    async def run() -> dict:
        for seed in (11, 12, 13):
            job = await upload_and_finish(
                pipeline, user, f"policy-{seed}.pdf", make_policy_pdf(seed=seed, pages=6)
            )
            assert job["status"] == "complete", job
        async with pipeline.client(user) as mine, pipeline.client(uuid.uuid4()) as stranger:
            r = await mine.get("/api/v2/search", params={"q": policy_phrase(12), "k": 5})
            other = await stranger.get("/api/v2/search", params={"q": policy_phrase(12)})
        return {"mine": r.json(), "other": other.json()}

    result = asyncio.run(run())
    hits = result["mine"]["hits"]
    assert hits[0]["filename"] == "policy-12.pdf"
    assert policy_phrase(12) in hits[0]["content"]
    assert hits[0]["score"] > hits[-1]["score"]
    assert hits[0]["page_start"] >= 1
    assert result["other"]["hits"] == []  # another user sees none of it


def test_every_process_exports_what_the_dashboard_and_alerts_query(
    pipeline: LocalPipeline, compactor: str
) -> None:
    user = uuid.uuid4()
    for name in ("pdflatex-4-pages.pdf", "grayscale-image.pdf"):  # one completes, one fails
        asyncio.run(upload_and_finish(pipeline, user, name, (CORPUS / name).read_bytes()))
    wanted = set().union(*(referenced(e) for e in dashboard_exprs() + alert_exprs()))

    missing: set[str] = set()

    async def all_exported() -> bool:
        exported: set[str] = set()
        stages = ("api", "parser", "chunker", "embedder", "finalizer")
        urls = [pipeline.health[name].rsplit("/", 1)[0] + "/metrics" for name in stages]
        for url in (*urls, compactor):
            text = (await asyncio.to_thread(httpx.get, url, timeout=10)).text
            exported |= {
                line.split("{")[0].split(" ")[0]
                for line in text.splitlines()
                if line.startswith("accessa_")
            }
        missing.clear()
        missing.update(wanted - exported)
        return not missing

    # Lag and DLQ depth are sampled by each stage every few seconds.
    try:
        asyncio.run(wait_for(all_exported, timeout=30, interval=1, what="every metric"))
    except AssertionError as exc:
        raise AssertionError(f"not exported: {sorted(missing)}") from exc


def test_upload_cli_waits_for_completion_and_exits_non_zero_with_the_reason_on_failure(
    pipeline: LocalPipeline,
) -> None:
    user = str(uuid.uuid4())
    ok = cli(
        pipeline, "upload", str(CORPUS / "minimal-document.pdf"), "--wait", "--json", "--user", user
    )
    assert ok.returncode == 0, ok.stderr
    (job,) = json.loads(ok.stdout)["jobs"].values()
    assert job["status"] == "complete"
    bad = cli(pipeline, "upload", str(CORPUS / "grayscale-image.pdf"), "--wait", "--user", user)
    assert bad.returncode == 1
    assert "no_text_layer" in bad.stderr + bad.stdout


def test_status_shows_the_lag_of_a_stopped_stage_and_the_job_resumes(
    pipeline: LocalPipeline,
) -> None:
    pipeline.stop("finalizer")
    try:
        user = uuid.uuid4()

        async def submit() -> str:
            async with pipeline.client(user) as client:
                r = await client.post(
                    "/api/v2/documents",
                    files={
                        "file": ("lag.pdf", make_policy_pdf(seed=99, pages=2), "application/pdf")
                    },
                )
                return r.json()["job_id"]

        job_id = asyncio.run(submit())

        async def lagging() -> dict | None:
            out = await asyncio.to_thread(cli, pipeline, "status", "--json")
            data = json.loads(out.stdout)
            return data if data["stages"]["finalizer"]["lag"] >= 1 else None

        status = asyncio.run(wait_for(lagging, timeout=120, interval=1, what="finalizer lag"))
        assert status["stages"]["finalizer"]["replicas"] == 0
        assert status["stages"]["finalizer"]["in_flight"] >= 1
        assert status["oldest_unfinished"] is not None
    finally:
        pipeline.start("finalizer")
        pipeline.wait_ready(("finalizer",))

    async def complete() -> bool:
        async with pipeline.client(user) as client:
            return (await client.get(f"/api/v2/jobs/{job_id}")).json()["status"] == "complete"

    asyncio.run(wait_for(complete, timeout=120, interval=0.5, what="the job to resume"))


def test_a_burst_queued_behind_a_stopped_embedder_completes_when_it_starts(
    pipeline: LocalPipeline,
) -> None:
    """The embedder then takes the whole backlog in one poll: every concurrent record may
    hold two database connections at once, and the pool must allow it (it once deadlocked)."""
    pipeline.stop("embedder")
    users = [uuid.uuid4() for _ in range(15)]  # 2 active jobs per user at most
    try:

        async def submit() -> list[tuple[uuid.UUID, str]]:
            jobs = []
            for i, user in enumerate(users):
                async with pipeline.client(user) as client:
                    for j in range(2):
                        pdf = make_policy_pdf(seed=10_000 + 2 * i + j, pages=1)
                        upload = {"file": (f"b{j}.pdf", pdf, "application/pdf")}
                        r = await client.post("/api/v2/documents", files=upload)
                        assert r.status_code == 202, r.text
                        jobs.append((user, r.json()["job_id"]))
            return jobs

        jobs = asyncio.run(submit())

        async def queued() -> bool:
            out = await asyncio.to_thread(cli, pipeline, "status", "--json")
            return json.loads(out.stdout)["stages"]["embedder"]["lag"] >= len(jobs)

        asyncio.run(wait_for(queued, timeout=120, interval=1, what="the backlog"))
    finally:
        pipeline.start("embedder")
        pipeline.wait_ready(("embedder",))

    async def all_complete() -> bool:
        for user, job_id in jobs:
            async with pipeline.client(user) as client:
                job = (await client.get(f"/api/v2/jobs/{job_id}")).json()
            if job["status"] != "complete":
                return False
        return True

    asyncio.run(wait_for(all_complete, timeout=180, interval=1, what="the burst to complete"))
