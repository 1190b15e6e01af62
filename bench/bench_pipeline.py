"""The pipeline end to end (API + four consumer processes on the real broker and database,
mock OpenAI at zero latency) against a single-process baseline running the same functions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from accessa.config import Settings
from accessa.db import create_pool
from accessa.ops.localrun import LocalPipeline
from accessa.providers.embeddings import make_provider
from accessa.storage import raw_key
from accessa.text import normalize_markdown
from bench.poll import until
from bench.workloads import (
    STATS_FLUSH_S,
    Upload,
    commit_counters,
    commits_per_document,
    copies,
    read_all,
)
from consumers.chunker.app import buffer_chunks
from consumers.chunker.chunking import Chunk, chunk_markdown, resolve_version
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf
from schemas.events import DocumentParsed

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# Files of the corpus that complete (image-only, encrypted and corrupt ones are excluded so
# the pipeline and the baseline do the same work).
SKIP = {
    "cmyk-image.pdf",
    "grayscale-image.pdf",
    "imagemagick-ASCII85Decode.pdf",
    "imagemagick-CCITTFaxDecode.pdf",
    "imagemagick-lzw.pdf",
    "libreoffice-writer-password.pdf",
    "unreadablemetadata.pdf",
}


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*.pdf") if p.name not in SKIP)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def steady_state(started: float, completions: Sequence[float], trim: float = 0.1) -> dict:
    """Ramp-up apart from steady state, from completion timestamps (seconds): the time from
    `started` to the first completed document, and the rate over the middle of the run (the
    first and last `trim` of completions left out: warm-up and the drain of the last ones)."""
    done = sorted(completions)
    if not done:
        return {"first_complete_s": None, "steady_docs_per_s": None}
    lo, hi = int(len(done) * trim), len(done) - 1 - int(len(done) * trim)
    window = done[hi] - done[lo]
    return {
        "first_complete_s": round(done[0] - started, 2),
        "steady_docs_per_s": round((hi - lo) / window, 2) if hi > lo and window > 0 else None,
        "steady_window_s": round(window, 1),
    }


async def _upload_all(pipe: LocalPipeline, uploads: list[Upload]) -> list[str]:
    """Each upload by its user (different users: no dedup), 16 clients at a time."""
    sem = asyncio.Semaphore(16)
    jobs: list[str] = []
    contents = read_all(uploads)

    async def one(client: httpx.AsyncClient, name: str, path: Path) -> None:
        async with sem:
            upload = {"file": (name, contents[path], "application/pdf")}
            r = await client.post("/api/v2/documents", files=upload)
            r.raise_for_status()
            jobs.append(r.json()["job_id"])

    clients = [pipe.client(uuid.uuid4()) for _ in range(max(u for u, _, _ in uploads) + 1)]
    try:
        await asyncio.gather(*(one(clients[u], name, path) for u, name, path in uploads))
    finally:
        for c in clients:
            await c.aclose()
    return jobs


async def _wait_finished(
    pool: Any, jobs: list[str], timeout: float = 900, polls: list[int] | None = None
) -> list[Any]:
    """The jobs' rows once all are done or dead-lettered; each poll appends to `polls`."""
    ids = [uuid.UUID(j) for j in jobs]
    if not ids:
        return []

    async def finished() -> list[Any] | None:
        if polls is not None:
            polls.append(1)
        rows = await pool.fetch(
            "SELECT job_id, state, status, pages, created_at, completed_at FROM upload_jobs "
            "WHERE job_id = ANY($1::uuid[])",
            ids,
        )
        done = len(rows) == len(ids) and all(r["state"] in ("done", "deadletter") for r in rows)
        return rows if done else None

    return await until(
        finished,
        timeout=timeout,
        interval=0.5,
        what="the pipeline to finish the benchmark documents",
    )


class RssWatch:
    """Peak memory of each pipeline process with its children, sampled every 50 ms in a
    thread: resident (RSS, pages shared between them counted in each) and proportional (PSS,
    each shared page split among its sharers: what the tree costs the machine)."""

    def __init__(self, pipe: LocalPipeline) -> None:
        self.procs = {n: psutil.Process(p.pid) for n, p in pipe.procs.items()}
        self.peak = dict.fromkeys(self.procs, 0)
        self.peak_pss = dict.fromkeys(self.procs, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            for name, proc in self.procs.items():
                try:
                    tree = [proc, *proc.children(recursive=True)]
                    memory = [p.memory_full_info() for p in tree]
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], sum(m.rss for m in memory))
                self.peak_pss[name] = max(self.peak_pss[name], sum(m.pss for m in memory))

    def __enter__(self) -> RssWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


class CpuMeter:
    """CPU seconds spent by each pipeline process, the broker and Postgres (backends included:
    the postmaster's reaped children count too) between two snapshots: shows what saturates
    the machine's cores."""

    def __init__(self, pipe: LocalPipeline, settings: Settings, own: str | None = None) -> None:
        from accessa.devstack.kafka import LocalKafka
        from accessa.devstack.postgres import LocalPostgres

        pids = {n: p.pid for n, p in pipe.procs.items()}
        # This process as `own` (an in-process side): its own time only, not its children's
        # (the pipeline's processes, and the broker and Postgres when it started them).
        self.own = {own: psutil.Process()} if own else {}
        if settings.embedded_kafka and (pid := LocalKafka(settings).pid()):
            pids["kafka"] = pid
        if settings.embedded_postgres and (pid := LocalPostgres(settings).pid()):
            pids["postgres"] = pid
        self.procs = {n: psutil.Process(pid) for n, pid in pids.items()}

    def snapshot(self) -> dict[str, float]:
        seconds = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                live = sum(sum(c.cpu_times()[:2]) for c in proc.children(recursive=True))
                seconds[name] = t.user + t.system + t.children_user + t.children_system + live
        for name, proc in self.own.items():
            t = proc.cpu_times()
            seconds[name] = t.user + t.system
        return seconds

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {n: round(after[n] - before[n], 1) for n in after if n in before}


async def end_to_end(
    settings: Settings,
    home: Path,
    users: int = 8,
    parsers: int = 1,
    big: bool = True,
    ocr: bool = False,
    uploads: list[Upload] | None = None,
    commits: bool = False,
) -> dict[str, Any]:
    """`uploads` (default: every corpus file by each of `users` users) through the API and
    every stage process; `parsers` parser replicas (parsing is the CPU-heavy stage, and pdfium
    reads one page at a time per process). OCR is off unless asked: the baseline and the peer
    read text layers only, and one scanned page (inline-image.pdf) took 70 % of the parser's
    worker. With `commits`, Postgres transactions per document too (waits out the statistics'
    flush before and after: 22 s)."""
    uploads = uploads if uploads is not None else copies(corpus_files(), users)
    pipe = await asyncio.to_thread(
        LocalPipeline.create, settings, home, ACCESSA_OCR="on" if ocr else "off"
    )
    await asyncio.to_thread(pipe.start_all)
    extra = tuple(f"parser#{n}" for n in range(2, parsers + 1))
    for name in extra:
        pipe.start(name)
    await asyncio.to_thread(pipe.wait_ready, extra)
    pool = await create_pool(settings, max_size=4)
    # Every round pays for its embeddings as the first did: no texts cached by earlier rounds
    # (within a round, the cache still serves the other users' copies of a text).
    await pool.execute("DELETE FROM embedding_cache")  # ops may not TRUNCATE (0017)
    rows_before = await pool.fetchval("SELECT count(*) FROM document_chunks")
    meter = CpuMeter(pipe, settings)
    polls: list[int] = []
    try:
        if commits:  # the start-up's transactions flushed to the statistics first
            await asyncio.sleep(STATS_FLUSH_S)
            counters = await commit_counters(pool)
        started = time.time()
        cpu_before = meter.snapshot()
        jobs = await _upload_all(pipe, uploads)
        rows = await _wait_finished(pool, jobs, polls=polls)
        cpu = meter.spent(cpu_before, meter.snapshot())
        wall = time.time() - started
        if commits:
            await asyncio.sleep(STATS_FLUSH_S)  # PGSTAT_IDLE_INTERVAL: not a synchronisation
            after = await commit_counters(pool)
        chunks = await pool.fetchval("SELECT count(*) FROM document_chunks") - rows_before
        done = [r for r in rows if r["status"] == "complete"]
        span = max(r["completed_at"] for r in done) - min(r["created_at"] for r in rows)
        latencies = [(r["completed_at"] - r["created_at"]).total_seconds() for r in done]
        first = min(r["created_at"] for r in rows).timestamp()
        result = {
            "documents": len(rows),
            "completed": len(done),
            "chunks": chunks,
            "docs_per_s": round(len(done) / span.total_seconds(), 2),
            **steady_state(first, [r["completed_at"].timestamp() for r in done]),
            "pages_per_s": round(sum(r["pages"] or 0 for r in done) / span.total_seconds(), 1),
            "latency_p50_s": round(percentile(latencies, 50), 2),
            "latency_p95_s": round(percentile(latencies, 95), 2),
            "wall_s": round(wall, 1),
            "parser_replicas": parsers,
            "index_rows_before": rows_before,
            "cpu_s": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "cores_busy": round(sum(cpu.values()) / span.total_seconds(), 2),
        }
        if commits:  # the first snapshot and each poll of the wait were one transaction each
            result["postgres_commits"] = commits_per_document(
                counters, after, len(done), own_queries=1 + len(polls)
            )
        if big:
            result["big_pdf"] = await big_pdf(pipe, pool)
        return result
    finally:
        await pool.close()
        await asyncio.to_thread(pipe.stop_all)


async def big_pdf(pipe: LocalPipeline, pool: Any) -> dict[str, Any]:
    """A generated ~24 MB, 300-page policy: upload → complete, and peak RSS per process."""
    pdf = make_policy_pdf(seed=4242, pages=300, target_bytes=24 * 1024 * 1024)
    with RssWatch(pipe) as watch:
        started = time.perf_counter()
        async with pipe.client(uuid.uuid4()) as client:
            r = await client.post(
                "/api/v2/documents", files={"file": ("big.pdf", pdf, "application/pdf")}
            )
            r.raise_for_status()
            (row,) = await _wait_finished(pool, [r.json()["job_id"]], timeout=600)
        elapsed = time.perf_counter() - started
    return {
        "bytes": len(pdf),
        "pages": row["pages"],
        "status": row["status"],
        "upload_to_complete_s": round(elapsed, 2),
        "peak_rss_mb": {n: round(v / 2**20) for n, v in watch.peak.items()},
        "peak_pss_mb": {n: round(v / 2**20) for n, v in watch.peak_pss.items()},
        "goal": "< 60 s; consumers < 300 MB",
    }


async def embed_cached(pool: Any, provider: Any, s: Settings, chunks: list[Chunk]) -> list[Any]:
    """The embedder's cache semantics: a text (the @2 header + chunk, keyed by its SHA-256) is
    read from `embedding_cache` when there, else embedded and written to it."""
    keys = [c.embed_sha256 or c.content_sha256 for c in chunks]
    rows = await pool.fetch(
        "SELECT content_sha256, embedding FROM embedding_cache "
        "WHERE content_sha256 = ANY($1::text[]) AND embed_model = $2 AND dimensions = $3",
        list(set(keys)),
        s.embed_model,
        s.embed_dimensions,
    )
    known = {r["content_sha256"]: r["embedding"] for r in rows}
    missing = {
        k: c.embed_header + c.content for k, c in zip(keys, chunks, strict=True) if k not in known
    }
    if missing:
        result = await provider.embed(list(missing.values()))
        fresh = dict(zip(missing, result.vectors, strict=True))
        await pool.executemany(
            "INSERT INTO embedding_cache (content_sha256, embed_model, dimensions, embedding) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(k, s.embed_model, s.embed_dimensions, v) for k, v in fresh.items()],
        )
        known.update(fresh)
    return [known[k] for k in keys]


async def baseline(
    settings: Settings, home: Path, users: int = 8, uploads: list[Upload] | None = None
) -> dict[str, Any]:
    """The same parse → normalise → chunk (the configured chunker) → embed (real client, mock
    server in its own process, the embedder's cache semantics) in one process, straight into
    document_chunks: no Kafka, no buffers. Like the end-to-end run, it starts with an empty
    embedding cache, so both embed each distinct text once per round. `uploads` as for
    `end_to_end`."""
    uploads = uploads if uploads is not None else copies(corpus_files(), users)
    contents = read_all(uploads)
    owners = [uuid.uuid4() for _ in range(max(u for u, _, _ in uploads) + 1)]
    pipe = await asyncio.to_thread(LocalPipeline.create, settings, home)
    await asyncio.to_thread(pipe.start_all, ("mocks",))
    s = pipe.settings.model_copy(update={"openai_base_url": f"{pipe.openai_url}/v1"})
    spec = resolve_version(
        s.chunker_version,
        target_tokens=s.chunk_target_tokens,
        overlap_tokens=s.chunk_overlap_tokens,
    )
    provider = make_provider(s)
    pool = await create_pool(settings, max_size=8)
    await pool.execute("DELETE FROM embedding_cache")  # ops may not TRUNCATE (0017)
    rows_before = await pool.fetchval("SELECT count(*) FROM document_chunks")
    sem = asyncio.Semaphore(4)
    completions: list[float] = []

    async def one(user: uuid.UUID, name: str, pdf: bytes) -> None:
        async with sem:
            doc = uuid.uuid4()
            parsed = await asyncio.to_thread(parse_pdf, pdf)
            markdown = normalize_markdown(parsed.markdown)
            chunks = chunk_markdown(
                markdown,
                document_id=doc,
                version=spec.version,
                target_tokens=spec.target_tokens,
                overlap_tokens=spec.overlap_tokens,
            )
            vectors = await embed_cached(pool, provider, s, chunks)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO documents (document_id, user_id, sha256, size, filename, "
                    "raw_path) VALUES ($1, $2, $3, $4, $5, $6)",
                    doc,
                    user,
                    hashlib.sha256(pdf).hexdigest(),
                    len(pdf),
                    name,
                    raw_key(user, doc),
                )
                await conn.executemany(
                    "INSERT INTO document_chunks (chunk_id, document_id, user_id, job_id, "
                    "chunker_version, embed_model, ordinal, content, content_sha256, "
                    "token_count, embedding) VALUES ($1, $2, $3, $2, 'baseline', $4, $5, $6, "
                    "$7, $8, $9)",
                    [
                        (
                            c.chunk_id,
                            doc,
                            user,
                            s.embed_model,
                            c.ordinal,
                            c.content,
                            c.content_sha256,
                            c.token_count,
                            v,
                        )
                        for c, v in zip(chunks, vectors, strict=True)
                    ],
                )
            completions.append(time.time())

    meter = CpuMeter(pipe, settings, own="baseline")
    try:
        cpu_before = meter.snapshot()
        started = time.time()
        await asyncio.gather(*(one(owners[u], n, contents[p]) for u, n, p in uploads))
        elapsed = time.time() - started
        cpu = meter.spent(cpu_before, meter.snapshot())
        chunks = await pool.fetchval("SELECT count(*) FROM document_chunks") - rows_before
        return {
            "documents": len(uploads),
            "chunks": chunks,
            "docs_per_s": round(len(uploads) / elapsed, 2),
            **steady_state(started, completions),
            "wall_s": round(elapsed, 1),
            "index_rows_before": rows_before,
            "cpu_s": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "cores_busy": round(sum(cpu.values()) / elapsed, 2),
        }
    finally:
        await pool.close()
        await asyncio.to_thread(pipe.stop_all)


async def chunk_and_buffer(settings: Settings, n_sections: int = 1000) -> dict[str, Any]:
    """1000 chunks: chunk the markdown and write them to the buffer in one transaction."""
    body = " ".join(
        f"Clause {i}: the insurer pays covered losses up to the limit." for i in range(30)
    )
    markdown = "\n\n".join(f"## Section {i}\n\n{body}" for i in range(n_sections))
    pool = await create_pool(settings, max_size=2)
    user, doc, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        await pool.execute(
            "INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path) "
            "VALUES ($1, $2, $3, 1, 'b.pdf', 'raw/b.pdf')",
            doc,
            user,
            uuid.uuid4().hex * 2,
        )
        await pool.execute(
            "INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id) "
            "VALUES ($1, $2, $3, 'bench')",
            job,
            user,
            doc,
        )
        event = DocumentParsed(
            event_id=uuid.uuid4(),
            job_id=job,
            document_id=doc,
            user_id=user,
            correlation_id="bench",
            parsed_path="p",
            parsed_sha256="0" * 64,
            pages=1,
            parser="bench",
        )
        started = time.perf_counter()
        chunks = chunk_markdown(markdown, document_id=doc)
        chunked = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await buffer_chunks(conn, event, "markdown-simple@1", chunks)
        done = time.perf_counter()
        await pool.execute("DELETE FROM documents WHERE document_id = $1", doc)
        return {
            "chunks": len(chunks),
            "chunk_s": round(chunked - started, 3),
            "buffer_s": round(done - chunked, 3),
            "total_s": round(done - started, 3),
            "goal": "< 0.5 s",
        }
    finally:
        await pool.close()
