"""`make eval`: retrieval quality through the real pipeline and API search -> bench/eval.json.

Uploads the documents of bench/eval_questions.json (corpus files and policy-like PDFs generated
from mocks/ with fixed seeds) for one user to a LocalPipeline on local infrastructure, once per
chunker version, asks every question through `GET /api/v2/search` in both modes, and runs a
LlamaIndex peer in the same run with the same mock embedder (pypdfium2 text, SentenceSplitter
512/64, top 5 by cosine). A hit is a returned chunk holding the expected answer string.
Reports hit@1, hit@5 and MRR (over the top 5) per document and overall.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accessa.config import Settings, get_settings
from accessa.ops.localrun import LocalPipeline
from accessa.tokens import count_tokens
from bench.bench_pipeline import CORPUS
from bench.poll import until

HERE = Path(__file__).parent
QUESTIONS = HERE / "eval_questions.json"
RESULTS = HERE / "eval.json"
K = 5
MODES = ("hybrid", "vector")
CHUNKERS = os.environ.get("ACCESSA_EVAL_CHUNKERS", "markdown-simple@1,markdown-simple@2")


def generated(name: str) -> bytes:
    """The generated documents named `gen:*` in the question set (fixed seeds: same bytes)."""
    from mocks.layout_pdf import make_layout_pdf
    from mocks.policy_pdf import make_policy_pdf
    from mocks.scanned_pdf import known_pages, scan, text_pdf

    makers = {
        "policy_101.pdf": lambda: make_policy_pdf(seed=101, pages=6),
        "policy_202.pdf": lambda: make_policy_pdf(seed=202, pages=6),
        "sbc_layout.pdf": lambda: make_layout_pdf(3),
        "scanned_home.pdf": lambda: scan(
            text_pdf(known_pages(2, seed=3, sentences_per_page=12)), dpi=200
        ),
    }
    return makers[name]()


def documents(spec: dict[str, Any]) -> dict[str, bytes]:
    """Filename -> bytes of every document of the question set."""
    out = {}
    for name in spec["documents"]:
        if name.startswith("gen:"):
            out[name.removeprefix("gen:")] = generated(name.removeprefix("gen:"))
        else:
            out[name] = (CORPUS / name).read_bytes()
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[*_\\`]", "", text)).strip().lower()


def holds(chunk: str, answer: str) -> bool:
    """`answer` in `chunk`, ignoring case, whitespace and markdown emphasis, at word bounds."""
    a = _norm(answer)
    left = r"(?<!\w)" if a[:1].isalnum() else ""
    right = r"(?!\w)" if a[-1:].isalnum() else ""
    return re.search(left + re.escape(a) + right, _norm(chunk)) is not None


def score(questions: list[dict[str, Any]], ranked: list[list[str]]) -> dict[str, Any]:
    """hit@1, hit@5 and MRR overall and per document; `ranked[i]`: question i's top texts."""
    ranks: list[int | None] = []
    for q, texts in zip(questions, ranked, strict=True):
        rank = next((i for i, t in enumerate(texts[:K], 1) if holds(t, q["answer"])), None)
        ranks.append(rank)

    def summary(idx: list[int]) -> dict[str, Any]:
        n = len(idx)
        return {
            "questions": n,
            "hit@1": round(sum(ranks[i] == 1 for i in idx) / n, 3),
            "hit@5": round(sum(ranks[i] is not None for i in idx) / n, 3),
            "mrr": round(sum(1 / r for i in idx if (r := ranks[i])) / n, 3),
        }

    by_doc: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_doc.setdefault(q["document"].removeprefix("gen:"), []).append(i)
    return {
        "overall": summary(list(range(len(questions)))),
        "per_document": {d: summary(idx) for d, idx in sorted(by_doc.items())},
        "misses": [q["question"] for q, r in zip(questions, ranks, strict=True) if r is None],
    }


# What the eval user's searchable chunks cost: how many, and the tokens embedded for them.
CHUNK_TOTALS = """
SELECT count(*) AS chunks, coalesce(sum(c.token_count), 0) AS tokens
FROM document_chunks c JOIN documents d USING (document_id)
WHERE d.user_id = $1 AND c.chunker_version = d.active_chunker_version
  AND c.embed_model = d.active_embed_model
"""


async def pipeline_answers(
    pipe: LocalPipeline, docs: dict[str, bytes], questions: list[dict[str, Any]]
) -> tuple[dict[str, list[list[str]]], dict[str, Any]]:
    """Upload `docs` for one new user, wait for every job, then search each question in each
    mode; returns the top-K texts per mode and the jobs' outcomes (with `chunks` and `tokens`:
    the user's searchable chunks and the tokens embedded for them)."""
    from accessa.db import create_pool

    user = uuid.uuid4()
    async with pipe.client(user) as client:
        jobs = {}
        for name, pdf in docs.items():
            r = await client.post(
                "/api/v2/documents", files={"file": (name, pdf, "application/pdf")}
            )
            r.raise_for_status()
            jobs[name] = r.json()["job_id"]

        async def finished() -> dict[str, Any] | None:
            out = {}
            for name, job in jobs.items():
                body = (await client.get(f"/api/v2/jobs/{job}")).json()
                if body["status"] not in ("complete",) and not body["status"].startswith("fail"):
                    return None
                out[name] = body["status"]
            return out

        outcome = await until(
            finished, timeout=900, interval=1.0, what="the eval documents to finish"
        )
        answers: dict[str, list[list[str]]] = {m: [] for m in MODES}
        for mode in MODES:
            for q in questions:
                r = await client.get(
                    "/api/v2/search", params={"q": q["question"], "k": K, "mode": mode}
                )
                r.raise_for_status()
                answers[mode].append([h["content"] for h in r.json()["hits"]])
    pool = await create_pool(pipe.settings, max_size=1)
    try:
        totals = await pool.fetchrow(CHUNK_TOTALS, user)
    finally:
        await pool.close()
    return answers, {"jobs": outcome, "chunks": totals["chunks"], "tokens": totals["tokens"]}


def peer_answers(
    docs: dict[str, bytes], questions: list[dict[str, Any]], openai_url: str, settings: Settings
) -> tuple[list[list[str]], dict[str, int]]:
    """The LlamaIndex peer: pypdfium2 text per document, SentenceSplitter(512, 64), an
    in-memory vector index embedded by the same mock OpenAI server, top 5 by cosine."""
    import openai
    import pypdfium2 as pdfium
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.node_parser import SentenceSplitter

    client = openai.OpenAI(base_url=f"{openai_url}/v1", api_key="mock")
    model, dims = settings.embed_model, settings.embed_dimensions

    class MockOpenAIEmbedding(BaseEmbedding):
        def _embed(self, texts: list[str]) -> list[list[float]]:
            resp = client.embeddings.create(model=model, input=texts, dimensions=dims)
            return [d.embedding for d in resp.data]

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._embed([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._embed(texts)

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._embed([query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    texts = []
    for name, pdf in docs.items():
        try:
            doc = pdfium.PdfDocument(pdf)
        except pdfium.PdfiumError:
            continue
        text = "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
        if text.strip():
            texts.append(Document(text=text, metadata={"filename": name}))
    nodes = SentenceSplitter(chunk_size=512, chunk_overlap=64).get_nodes_from_documents(texts)
    index = VectorStoreIndex(nodes, embed_model=MockOpenAIEmbedding(embed_batch_size=64))
    retriever = index.as_retriever(similarity_top_k=K)
    ranked = [[n.node.get_content() for n in retriever.retrieve(q["question"])] for q in questions]
    tokens = sum(count_tokens(n.get_content()) for n in nodes)
    return ranked, {"chunks": len(nodes), "tokens": tokens}


def infra_up(settings: Settings) -> list[Any]:
    """Local Postgres and Kafka up (those this run started are returned, to stop them)."""
    from accessa.devstack.kafka import LocalKafka
    from accessa.devstack.postgres import LocalPostgres
    from accessa.migrate import migrate
    from accessa.topics import ensure_topics

    started: list[Any] = []
    if settings.embedded_postgres and (pg := LocalPostgres(settings)).up():
        started.append(pg)
    if settings.embedded_kafka and (kafka := LocalKafka(settings)).up():
        started.append(kafka)
    asyncio.run(migrate(settings))
    asyncio.run(ensure_topics(settings))
    return started


def main() -> None:
    spec = json.loads(QUESTIONS.read_text())
    questions = spec["questions"]
    docs = documents(spec)
    settings = get_settings()
    started = infra_up(settings)
    results: dict[str, Any] = {}
    try:
        for chunker in [c.strip() for c in CHUNKERS.split(",") if c.strip()]:
            with tempfile.TemporaryDirectory() as home:
                pipe = LocalPipeline.create(settings, Path(home), ACCESSA_CHUNKER_VERSION=chunker)
                pipe.start_all()
                try:
                    began = time.monotonic()
                    answers, outcome = asyncio.run(pipeline_answers(pipe, docs, questions))
                    entry: dict[str, Any] = {
                        **outcome,
                        "ingest_and_search_s": round(time.monotonic() - began, 1),
                    }
                    for mode in MODES:
                        entry[mode] = score(questions, answers[mode])
                    results[chunker] = entry
                    if "llamaindex_peer" not in results:
                        peer, sizes = peer_answers(docs, questions, pipe.openai_url, settings)
                        results["llamaindex_peer"] = {**score(questions, peer), **sizes}
                finally:
                    pipe.stop_all()
    finally:
        for component in reversed(started):
            component.down()
    peer5 = results["llamaindex_peer"]["overall"]["hit@5"]
    results["goal"] = {
        "target": "pipeline hit@5 >= peer hit@5 + 0.10 (same mock embedder)",
        "peer_hit@5": peer5,
        **{
            f"{c} {m}": round(results[c][m]["overall"]["hit@5"] - peer5, 3)
            for c in results
            if c.startswith("markdown")
            for m in MODES
        },
    }
    results["_meta"] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} cores={os.cpu_count()}",
        "questions": len(questions),
        "documents": len(docs),
        "k": K,
        "embedder": f"mock OpenAI server (mocks/openai_server.py), {settings.embed_model}",
        "command": "make eval",
    }
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    for name in [c for c in results if c.startswith("markdown")]:
        for mode in MODES:
            print(name, mode, results[name][mode]["overall"], results[name]["chunks"], "chunks")
    print("llamaindex_peer", results["llamaindex_peer"]["overall"])


if __name__ == "__main__":
    main()
