"""The LlamaIndex peer of `make bench` (the `bench` extra): what a user gets from a few lines of
LlamaIndex on the same machine, the same corpus multiple and the same embedded Postgres.

`IngestionPipeline` (its default in-memory cache on, emptied per round) of
`SentenceSplitter(512, 64)` and `OpenAIEmbedding` pointed at the same mock OpenAI server our
embedder calls (same SDK, same batch size), into a `PGVectorStore` table of its own schema
(vector(1536), as ours) whose HNSW index takes m and ef_construction from ours in the catalog,
over the vectors by cosine (PGVectorStore indexes the column itself; ours may index an
expression of it, e.g. a binary quantization, which the result records).
Text by pypdfium2, one thread (PDFium is not thread-safe), `concurrency` documents in flight.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

from accessa.config import Settings
from accessa.ops.localrun import LocalPipeline
from bench.bench_pipeline import CpuMeter, corpus_files, steady_state
from bench.workloads import Upload, copies, read_all

SCHEMA = "bench_peer"
TABLE = "llamaindex"  # PGVectorStore names the table data_llamaindex


def hnsw_options(indexdef: str) -> dict[str, int]:
    """m and ef_construction of an HNSW index from its `pg_get_indexdef` text."""
    params = dict(re.findall(r"(\w+)='?(\d+)'?", indexdef.partition(" WITH ")[2]))
    if " USING hnsw " not in indexdef or not {"m", "ef_construction"} <= params.keys():
        raise ValueError(f"not an HNSW index with m and ef_construction: {indexdef}")
    return {"hnsw_m": int(params["m"]), "hnsw_ef_construction": int(params["ef_construction"])}


async def our_index(settings: Settings) -> tuple[str, str]:
    """Our vector index's definition and the embedding column's type, from the catalog."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        indexdef = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'upload_pipeline' "
            # A segmented document_chunks (0022) has its HNSW indexes on its partitions.
            "AND tablename LIKE 'document\\_chunks%' AND indexdef LIKE '% USING hnsw %' "
            "ORDER BY tablename LIMIT 1"
        )
        column = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'upload_pipeline.document_chunks'::regclass "
            "AND attname = 'embedding'"
        )
    finally:
        await conn.close()
    if indexdef is None:
        raise RuntimeError("document_chunks has no HNSW index to copy m and ef_construction from")
    return indexdef, column


async def reset(settings: Settings) -> None:
    """Drop the peer's schema (its table and index)."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    finally:
        await conn.close()


def pdf_text(pdf: bytes) -> str:
    """Every page's text layer, as LlamaIndex's users read PDFs with pypdfium2."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


async def run(
    settings: Settings,
    home: Path,
    users: int = 32,
    concurrency: int = 4,
    uploads: list[Upload] | None = None,
) -> dict[str, Any]:
    """`uploads` (default: every corpus file once per user, as the end-to-end run uploads
    them) through the peer; its table is kept between rounds, as our `document_chunks` is."""
    from llama_index.core import Document
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.vector_stores.postgres import PGVectorStore

    ours, column = await our_index(settings)
    hnsw = {**hnsw_options(ours), "hnsw_dist_method": "vector_cosine_ops"}
    dims = settings.embed_dimensions
    if column != f"vector({dims})":
        raise RuntimeError(f"our embedding column is {column}; the peer would store vector({dims})")
    uploads = uploads if uploads is not None else copies(corpus_files(), users)
    contents = read_all(uploads)
    pipe = await asyncio.to_thread(LocalPipeline.create, settings, home)
    await asyncio.to_thread(pipe.start_all, ("mocks",))
    dsn = settings.dsn.split("?")[0]
    store = PGVectorStore(
        connection_string=dsn.replace("postgresql://", "postgresql+psycopg2://", 1),
        async_connection_string=dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
        schema_name=SCHEMA,
        table_name=TABLE,
        embed_dim=dims,
        hnsw_kwargs={**hnsw, "hnsw_ef_search": 100},
    )
    embed = OpenAIEmbedding(
        model=settings.embed_model,
        dimensions=dims,
        api_base=f"{pipe.openai_url}/v1",
        api_key="mock",
        embed_batch_size=settings.embed_batch_inputs,
    )
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=512, chunk_overlap=64), embed],
        vector_store=store,
    )
    pdfium = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    completions: list[float] = []

    async def one(name: str, pdf: bytes) -> None:
        async with sem:
            text = await loop.run_in_executor(pdfium, pdf_text, pdf)
            await pipeline.arun(documents=[Document(text=text, metadata={"filename": name})])
            completions.append(time.time())

    meter = CpuMeter(pipe, settings, own="peer")
    try:
        await asyncio.to_thread(store.add, [])  # schema, table and index before the clock
        rows_before = await _rows(settings)
        cpu_before = meter.snapshot()
        started = time.time()
        await asyncio.gather(*(one(n, contents[p]) for _, n, p in uploads))
        elapsed = time.time() - started
        cpu = meter.spent(cpu_before, meter.snapshot())
        return {
            "documents": len(completions),
            "chunks": await _rows(settings) - rows_before,
            "docs_per_s": round(len(completions) / elapsed, 2),
            **steady_state(started, completions),
            "wall_s": round(elapsed, 1),
            "index_rows_before": rows_before,
            "hnsw": hnsw,
            "embedding": "OpenAIEmbedding over HTTP to the mock OpenAI server, as our embedder",
            "our_index": ours,
            "cpu_s": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
            "cores_busy": round(sum(cpu.values()) / elapsed, 2),
        }
    finally:
        pdfium.shutdown()
        await store.close()
        await asyncio.to_thread(pipe.stop_all)


async def _rows(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.dsn)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.data_{TABLE}")
    finally:
        await conn.close()
