"""The books a reliability test keeps: what was uploaded, what each document must end as, and
an audit of what the pipeline really wrote (rows, buffers, topics, embeddings paid for).

Expected chunks are computed with the pipeline's own parse and chunk functions, so a test
knows the exact chunk ids each document must end with before anything runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from accessa.db import create_pool
from accessa.ops.localrun import LocalPipeline
from accessa.text import normalize_markdown
from accessa.topic_scan import scan
from consumers.chunker.chunking import chunk_markdown
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf
from schemas.topics import Topics
from tests.utils import wait_for

_STATUS = "SELECT job_id, status FROM upload_jobs WHERE job_id = ANY($1::uuid[])"
_CHUNKS = """SELECT document_id, chunk_id, vector_dims(embedding) AS dims
             FROM document_chunks WHERE document_id = ANY($1::uuid[])"""
_COMPLETIONS = """SELECT job_id FROM events WHERE job_id = ANY($1::uuid[])
                  AND kind = 'advanced' AND status = 'complete'"""
_BUFFERED = """SELECT (SELECT count(*) FROM document_chunk_buffer WHERE job_id = ANY($1))
                    + (SELECT count(*) FROM document_vector_buffer WHERE job_id = ANY($1))"""
REPORT_PATH = Path(__file__).resolve().parents[2] / "bench" / "reliability.json"


@dataclass
class Upload:
    job_id: uuid.UUID
    document_id: uuid.UUID
    chunk_ids: set[uuid.UUID]
    chunk_hashes: set[str]


@dataclass
class Audit:
    """What the pipeline wrote for a batch of uploads; `problems` is empty when all is well."""

    documents: int
    complete: int = 0
    chunks: int = 0
    lost: int = 0
    duplicates: int = 0
    paid_twice: int = 0
    buffered_left: int = 0
    completed_records: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """Documents one test uploads: fresh seeds, so no chunk text was ever embedded before."""

    pipeline: LocalPipeline
    user: uuid.UUID = field(default_factory=uuid.uuid4)
    uploads: list[Upload] = field(default_factory=list)
    pdfs: list[bytes] = field(default_factory=list)
    parse: Callable[[bytes], str] = field(default=lambda pdf: parse_pdf(pdf).markdown)

    @classmethod
    def make(cls, pipeline: LocalPipeline, count: int, pages: int = 2, **kw: Any) -> Batch:
        """`count` fresh policy PDFs; `parse=` is the parser the pipeline runs (local)."""
        batch = cls(pipeline, **kw)
        first = random.randrange(10**6, 10**9)
        batch.pdfs = [make_policy_pdf(seed=first + i, pages=pages) for i in range(count)]
        return batch

    async def upload(self, pdfs: list[bytes] | None = None, *, retry_s: float = 0) -> None:
        """Upload (the given or all) PDFs; with `retry_s`, keep retrying refused uploads."""
        async with self.pipeline.client(self.user) as client:
            for pdf in self.pdfs if pdfs is None else pdfs:
                r = await _post(client, pdf, retry_s)
                body = r.json()
                document_id = uuid.UUID(body["document_id"])
                chunks = expected_chunks(self.parse(pdf), document_id, self.pipeline)
                # what the embedder pays for: @2 embeds a contextual header with the text
                paid = {c.embed_sha256 or c.content_sha256 for c in chunks}
                self.uploads.append(
                    Upload(
                        uuid.UUID(body["job_id"]), document_id, {c.chunk_id for c in chunks}, paid
                    )
                )

    @asynccontextmanager
    async def _pool(self) -> AsyncIterator[asyncpg.Pool]:
        pool = await create_pool(self.pipeline.settings, min_size=1, max_size=2)
        try:
            yield pool
        finally:
            await pool.close()

    async def statuses(self, pool: asyncpg.Pool | None = None) -> dict[uuid.UUID, str]:
        """job → status now."""
        if pool is None:
            async with self._pool() as pool:
                return await self.statuses(pool)
        return dict(await pool.fetch(_STATUS, [u.job_id for u in self.uploads]))

    async def _wait_until(
        self, done: Callable[[dict[uuid.UUID, str]], bool], what: str, timeout: float
    ) -> dict[uuid.UUID, str]:
        """Poll the statuses, on one pool, until `done(statuses)`; returns them."""
        async with self._pool() as pool:

            async def check() -> dict[uuid.UUID, str] | None:
                st = await self.statuses(pool)
                return st if done(st) else None

            return await wait_for(check, timeout=timeout, interval=0.5, what=what)

    async def wait_finished(self, timeout: float = 240) -> dict[uuid.UUID, str]:
        """Every job complete or failed; returns job → status."""
        return await self._wait_until(
            lambda st: (
                len(st) == len(self.uploads)
                and all(s == "complete" or s.startswith("failed") for s in st.values())
            ),
            "jobs to finish",
            timeout,
        )

    async def upload_over(self, pdfs: list[bytes], seconds: float) -> int:
        """Upload `pdfs` one by one, spread evenly over `seconds` (an outage's length);
        returns how many the API accepted."""
        started = time.monotonic()
        pace = seconds / max(1, len(pdfs))
        for accepted, pdf in enumerate(pdfs, start=1):
            await self.upload([pdf])
            await asyncio.sleep(
                max(0.0, started + pace * accepted - time.monotonic())
            )  # pacing the uploads
        return len(pdfs)

    async def wait_complete(self, at_least: int, timeout: float = 180) -> int:
        """At least `at_least` jobs complete; returns how many are."""
        st = await self._wait_until(
            lambda st: _complete(st) >= at_least, f"{at_least} complete jobs", timeout
        )
        return _complete(st)

    async def audit(self) -> Audit:
        """Compare what was written with what each document must end as."""
        settings = self.pipeline.settings
        result = Audit(documents=len(self.uploads))
        jobs = [u.job_id for u in self.uploads]
        docs = [u.document_id for u in self.uploads]
        async with self._pool() as pool:
            status = await self.statuses(pool)
            rows = await pool.fetch(_CHUNKS, docs)
            completions = Counter(r["job_id"] for r in await pool.fetch(_COMPLETIONS, jobs))
            buffered = await pool.fetchval(_BUFFERED, jobs)
        async with httpx.AsyncClient(base_url=self.pipeline.openai_url) as mock:
            paid = (await mock.get("/_mock/stats")).json()["embeds_by_hash"]
        completed, sent = await completed_event_ids(self.pipeline)

        by_doc: dict[uuid.UUID, list[Any]] = {}
        for row in rows:
            by_doc.setdefault(row["document_id"], []).append(row)
        for u in self.uploads:
            got = by_doc.get(u.document_id, [])
            ids = [r["chunk_id"] for r in got]
            result.chunks += len(got)
            if status.get(u.job_id) == "complete":
                result.complete += 1
            else:
                result.lost += 1
                result.problems.append(f"job {u.job_id} is {status.get(u.job_id)}")
            if set(ids) != u.chunk_ids:
                result.lost += len(u.chunk_ids - set(ids))
                result.problems.append(
                    f"document {u.document_id}: {len(ids)} chunks, expected {len(u.chunk_ids)}"
                )
            if any(r["dims"] != settings.embed_dimensions for r in got):
                result.problems.append(f"document {u.document_id}: vectors of wrong dimension")
            for sha in u.chunk_hashes:
                if paid.get(sha, 0) != 1:
                    result.paid_twice += paid.get(sha, 0) > 1
                    result.problems.append(f"chunk text {sha[:12]} paid {paid.get(sha, 0)} times")
            effects = len(completed.get(str(u.document_id), set()))
            if completions[u.job_id] != 1 or effects != 1:
                result.duplicates += max(0, completions[u.job_id] - 1) + max(0, effects - 1)
                result.problems.append(
                    f"job {u.job_id}: {completions[u.job_id]} completions, "
                    f"{effects} completed events"
                )
            result.duplicates += len(ids) - len(set(ids))
        result.completed_records = sum(sent[str(u.document_id)] for u in self.uploads)
        result.buffered_left = buffered
        if buffered:
            result.problems.append(f"{buffered} rows left in the buffer tables")
        return result


def assert_ingested(batch: Batch, fault: str, **figures: Any) -> None:
    """Audit the batch, report it as surviving `fault` (with `figures`), and check it did:
    every document complete, nothing lost, duplicated or paid for twice."""
    audit = asyncio.run(batch.audit())
    REPORT.fault(fault, audit, **figures)
    assert audit.problems == []
    assert (audit.complete, audit.lost, audit.duplicates, audit.paid_twice) == (
        audit.documents,
        0,
        0,
        0,
    )


def _complete(statuses: dict[uuid.UUID, str]) -> int:
    return sum(s == "complete" for s in statuses.values())


async def _post(client: httpx.AsyncClient, pdf: bytes, retry_s: float) -> httpx.Response:
    deadline = time.monotonic() + retry_s
    while True:
        try:
            upload = {"file": ("policy.pdf", pdf, "application/pdf")}
            r = await client.post("/api/v2/documents", files=upload)
            if r.status_code == 202 or time.monotonic() > deadline:
                assert r.status_code == 202, r.text
                return r
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)  # an outage: try again until the deadline


def expected_chunks(markdown: str, document_id: uuid.UUID, pipeline: LocalPipeline) -> list[Any]:
    """The chunks the pipeline must make of a parser's `markdown`, by its own chunk code."""
    s = pipeline.settings
    return chunk_markdown(
        normalize_markdown(markdown),
        document_id=document_id,
        version=s.chunker_version,
        target_tokens=s.chunk_target_tokens,
        overlap_tokens=s.chunk_overlap_tokens,
    )


async def completed_event_ids(
    pipeline: LocalPipeline,
) -> tuple[dict[str, set[str]], Counter[str]]:
    """document id → the distinct event ids on the `completed` topic (re-sends after a crash
    share one), and document id → how many records were sent."""
    topic = Topics(pipeline.settings.topic_prefix).name(Topics.COMPLETED)
    found: dict[str, set[str]] = {}
    sent: Counter[str] = Counter()
    async for record in scan(pipeline.settings, topic):
        body = json.loads(record.value or b"")
        found.setdefault(body["document_id"], set()).add(body["event_id"])
        sent[body["document_id"]] += 1
    return found, sent


class Report:
    """Figures for bench/reliability.json, gathered by the tests that earn them."""

    def __init__(self) -> None:
        self.kills: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []

    def kill(self, stage: str, point: str, audit: Audit) -> None:
        self.kills.append({"stage": stage, "point": point, **_figures(audit)})

    def fault(self, name: str, audit: Audit, **extra: Any) -> None:
        self.faults.append({"fault": name, **_figures(audit), **extra})

    def write(self, poison: dict[str, Any], path: Path = REPORT_PATH) -> dict[str, Any]:
        every = self.kills + self.faults
        data = {
            "kills_survived": sum(not k["problems"] for k in self.kills),
            "kills_tried": len(self.kills),
            "faults_survived": sum(not f["problems"] for f in self.faults),
            "faults_tried": len(self.faults),
            "poison_kinds_tried": poison.get("tried", 0),
            "poison_kinds_handled": poison.get("passed", 0),
            "documents": sum(e["documents"] for e in every),
            "documents_lost": sum(e["lost"] for e in every),
            "duplicates": sum(e["duplicates"] for e in every),
            "embeddings_paid_twice": sum(e["paid_twice"] for e in every),
            "kills": self.kills,
            "faults": self.faults,
        }
        if path.exists() and "fuzz" in (kept := json.loads(path.read_text())):
            data["fuzz"] = kept["fuzz"]  # `make fuzz` writes that key
        path.write_text(json.dumps(data, indent=2) + "\n")
        return data


def _figures(audit: Audit) -> dict[str, Any]:
    keep = (
        "documents",
        "complete",
        "chunks",
        "lost",
        "duplicates",
        "paid_twice",
        "buffered_left",
        "completed_records",
        "problems",
    )
    return {k: v for k, v in asdict(audit).items() if k in keep}


REPORT = Report()
