"""Search over a user's completed documents (the caller's RLS scope applies).

Only each document's active version is searched (`accessa reprocess` may keep others beside
it until garbage collection). Vectors of different models are not comparable: a query is
embedded once per active model and each model's documents are searched with their own.

Two modes: `vector` (cosine similarity) and `hybrid`, which fuses the vector ranking with a
full-text ranking (BM25 over the chunks' generated `content_tsv`) by reciprocal rank. Exact
terms (policy numbers, amounts, phone numbers, clause ids) and rare words rank by full text
even when an embedding blurs them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import asyncpg

# RLS filters rows after the index scan; iterative scans keep going until `k` rows of this
# user are found (pgvector >= 0.8), so a user with few documents still gets k results.
# document_chunks is segmented (migrations 0022-0024): the segments read by index ($4: sealed,
# holding many of the caller's chunks) give their best `k` through a Merge Append of their
# HNSW indexes; the others ($5: growing, sealing, or few of the caller's) sort the caller's
# chunks exactly, ordered by `distance + 0`, which no index serves (else the planner would
# merge those segments' index scans too, walking their graphs for a few rows). The lists are
# parameters, so a custom plan prunes each part to its own partitions.
_SEGMENTS = """
  SELECT c.chunk_id, c.document_id, d.filename, c.ordinal, c.content, c.metadata,
         c.chunker_version, c.embed_model, c.embedding <=> $1 AS distance
  FROM document_chunks c JOIN documents d USING (document_id)
  WHERE c.segment = ANY(${}::bigint[])
    AND c.chunker_version = d.active_chunker_version AND c.embed_model = d.active_embed_model
    AND ($3::text IS NULL OR c.embed_model = $3)
  ORDER BY {}
  LIMIT $2
"""
SEARCH = f"""
SELECT chunk_id, document_id, filename, ordinal, content, metadata, chunker_version,
       embed_model, 1 - distance AS score
FROM (({_SEGMENTS.format(4, "c.embedding <=> $1")})
      UNION ALL ({_SEGMENTS.format(5, "(c.embedding <=> $1) + 0")})) hits
ORDER BY distance
LIMIT $2
"""
# Up to this many chunks of the caller, search sorts them all by distance (exact; about 18 ms
# for 2000 here); beyond, it reads the HNSW index first (about 10 ms, see EF_SEARCH). The
# planner does not choose so itself: it charges a 1536-d distance like one integer comparison
# and underestimates the join with the active versions, so it sorted every chunk of a user with
# 24k of 100k chunks: 970 ms p50 (bench/bench_pgcost.py, vector_search_latency).
EXACT_UP_TO = 2000
# Beyond EXACT_UP_TO, a sealed segment holding more than this many of the caller's chunks is
# read through its index (a fixed cost per segment, ~ef_search candidates), one holding fewer
# is sorted (~9 us per chunk): a caller spread over segments sorts at most this many in each.
SEGMENT_EXACT_UP_TO = 500
# The candidate list per indexed segment: EF_SEARCH shared among them, at least this many. Each
# segment's index scan costs about its list's length, and a segment's graph is smaller than the
# table's: at 100k rows in 5 segments, EF_SEARCH in each cost 3.2x one index's p95 for the user
# with 24k chunks (recall@10 0.987 against its 0.94); shared, 1.78x at recall 0.997 against
# 0.95 (bench/bench_segments.py; a lower floor may trade some of that recall for time).
SEGMENT_EF_MIN = 200
# The index's candidate list for those callers: recall@10 against exact search for a user with
# 24k of 100k clustered chunks was 0.85 / 0.91 / 0.95 / 0.96 at 100 / 200 / 400 / 800, p50
# 7 / 5 / 8 / 10 ms (bench_pgcost.search_latency, "ef_search_sweep"; 0.78-0.94 in another run).
EF_SEARCH = 800
# One round trip, for the transaction: which segments hold the caller's chunks and how each is
# read (`upload_pipeline.user_segment_rows`), whether the caller has few enough chunks to sort
# them all; the index's settings; a custom plan for every search (a generic plan of the prepared
# statement, which Postgres switches to after five runs, cannot see `k` or the segment lists
# and assumes a tenth of the rows are wanted); and, for a large caller, no sort.
SEARCH_SETTINGS = """
WITH seg AS MATERIALIZED (
  SELECT segment, sealed AND rows > $3 AS indexed, rows
  FROM upload_pipeline.user_segment_rows($1)
), small AS (SELECT coalesce(sum(rows), 0) <= $1 AS yes FROM seg
), lists AS (
  SELECT yes,
         ARRAY(SELECT segment FROM seg WHERE indexed AND NOT yes) AS indexed,
         ARRAY(SELECT segment FROM seg WHERE NOT indexed OR yes) AS exact
  FROM small
), ef AS (
  SELECT *, greatest($4::int, $2::int / greatest(cardinality(indexed), 1))::text AS ef_search
  FROM lists
)
SELECT yes, indexed, exact,
       set_config('hnsw.ef_search', ef_search, true),
       set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('enable_sort', CASE WHEN yes THEN 'on' ELSE 'off' END, true)
FROM ef
"""
# BM25 (k1 1.2, b 0.75) over the active chunks of the caller's scope: a chunk matches any
# lexeme of the query (OR: a question's words rarely all appear in its answer), and each
# lexeme weighs by its rarity among these chunks (IDF), which neither ts_rank nor the
# embedding has. Length is the count of distinct lexemes (tsvector length). `stats` is
# MATERIALIZED: inlined, the planner (estimating one match) re-aggregated the whole scope
# once per matching row, 1.7 s for a 760-chunk user among 100k chunks.
TEXT_SEARCH = """
WITH terms AS (
  SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', $1)) WHERE lexeme !~ '[''\\\\]'
), query AS (
  SELECT to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS tsq FROM terms
), scope AS NOT MATERIALIZED (
  SELECT c.chunk_id, c.embed_model, c.content_tsv, length(c.content_tsv) AS len
  FROM document_chunks c JOIN documents d USING (document_id)
  WHERE c.chunker_version = d.active_chunker_version AND c.embed_model = d.active_embed_model
), stats AS MATERIALIZED (
  SELECT count(*) AS n, greatest(avg(len), 1) AS avglen FROM scope
), matches AS (
  SELECT s.chunk_id, s.embed_model, s.len, u.lexeme, coalesce(cardinality(u.positions), 1) AS tf
  FROM scope s CROSS JOIN query q CROSS JOIN LATERAL unnest(s.content_tsv) u
  WHERE s.content_tsv @@ q.tsq AND u.lexeme IN (SELECT lexeme FROM terms)
), df AS (
  SELECT lexeme, count(*) AS df FROM matches GROUP BY lexeme
)
SELECT m.chunk_id, m.embed_model,
       sum(ln(1 + (st.n - df.df + 0.5) / (df.df + 0.5))
           * m.tf * 2.2 / (m.tf + 1.2 * (0.25 + 0.75 * m.len / st.avglen))) AS score
FROM matches m JOIN df USING (lexeme) CROSS JOIN stats st
GROUP BY m.chunk_id, m.embed_model
ORDER BY score DESC, m.chunk_id
LIMIT $2
"""
CHUNKS = """
SELECT c.chunk_id, c.document_id, d.filename, c.ordinal, c.content, c.metadata,
       c.chunker_version, c.embed_model
FROM document_chunks c JOIN documents d USING (document_id)
WHERE (c.chunk_id, c.embed_model) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))
"""
ACTIVE_MODELS = """
SELECT DISTINCT active_embed_model FROM documents WHERE active_embed_model IS NOT NULL ORDER BY 1
"""


def settings_args() -> tuple[int, int, int, int]:
    """SEARCH_SETTINGS' parameters (read at each call: a benchmark may vary EF_SEARCH)."""
    return EXACT_UP_TO, EF_SEARCH, SEGMENT_EXACT_UP_TO, SEGMENT_EF_MIN


async def active_models(conn: asyncpg.Connection) -> list[str]:
    """The embedding models of the caller's searchable documents."""
    return [r["active_embed_model"] for r in await conn.fetch(ACTIVE_MODELS)]


Mode = Literal["hybrid", "vector"]
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)
CANDIDATES = 50  # each ranking's depth that hybrid fuses


async def search(
    conn: asyncpg.Connection,
    query: str,
    vectors: Mapping[str, Sequence[float]],
    k: int,
    mode: Mode = "hybrid",
) -> list[dict[str, Any]]:
    """The `k` best chunks for `query` (embedded per model as `vectors`) in `mode`."""
    if mode == "vector":
        return await search_models(conn, vectors, k)
    return await search_hybrid(conn, query, vectors, k)


async def search_hybrid(
    conn: asyncpg.Connection, query: str, vectors: Mapping[str, Sequence[float]], k: int
) -> list[dict[str, Any]]:
    """The `k` best chunks by reciprocal rank fusion of the vector and the full-text ranking
    (score: the sum of 1 / (60 + rank) over both rankings). Runs in the caller's transaction,
    so both rankings see only the caller's chunks."""
    depth = max(k, CANDIDATES)
    by_vector = await search_models(conn, vectors, depth)
    # Postgres text cannot hold NUL (the embedder takes it as it is); other bytes are fine.
    by_text = await conn.fetch(TEXT_SEARCH, query.replace("\x00", " "), depth)
    fused: dict[tuple[Any, str], float] = {}
    for ranking in (
        [(h["chunk_id"], h["embed_model"]) for h in by_vector],
        [(r["chunk_id"], r["embed_model"]) for r in by_text],
    ):
        for rank, key in enumerate(ranking, 1):
            fused[key] = fused.get(key, 0.0) + 1 / (RRF_K + rank)
    best = sorted(fused, key=lambda key: (-fused[key], str(key[0])))[:k]
    known = {(h["chunk_id"], h["embed_model"]): h for h in by_vector}
    missing = [key for key in best if key not in known]
    if missing:
        rows = await conn.fetch(CHUNKS, [c for c, _ in missing], [m for _, m in missing])
        known.update({(r["chunk_id"], r["embed_model"]): _hit(r, 0.0) for r in rows})
    return [{**known[key], "score": round(fused[key], 6)} for key in best if key in known]


async def search_models(
    conn: asyncpg.Connection, vectors: Mapping[str, Sequence[float]], k: int
) -> list[dict[str, Any]]:
    """The `k` best chunks over documents of each model, searched with that model's query
    vector (`{model: vector}`), merged by score."""
    hits = [h for m, v in vectors.items() for h in await search_chunks(conn, v, k, model=m)]
    return sorted(hits, key=lambda h: h["score"], reverse=True)[:k]


async def search_chunks(
    conn: asyncpg.Connection, vector: Sequence[float], k: int, *, model: str | None = None
) -> list[dict[str, Any]]:
    """The `k` chunks nearest to `vector`, best first (score = cosine similarity), among
    documents embedded with `model` (None: all). Runs in the caller's transaction."""
    plan = await conn.fetchrow(SEARCH_SETTINGS, *settings_args())
    rows = await conn.fetch(SEARCH, list(vector), k, model, plan["indexed"], plan["exact"])
    if not plan["yes"]:  # the rest of the transaction (hybrid's full-text ranking) sorts
        await conn.execute("SET LOCAL enable_sort = on")
        if len(rows) < k:
            # The index's iterative scan gave up first (hnsw.max_scan_tuples, or its memory)
            # where other users' chunks crowd the caller's: sort them after all.
            every = plan["indexed"] + plan["exact"]
            rows = await conn.fetch(SEARCH, list(vector), k, model, [], every)
    return [_hit(r, round(float(r["score"]), 4)) for r in rows]


def _hit(r: asyncpg.Record, score: float) -> dict[str, Any]:
    return {
        "chunk_id": r["chunk_id"],
        "document_id": r["document_id"],
        "filename": r["filename"],
        "ordinal": r["ordinal"],
        "heading_path": r["metadata"].get("heading_path", []),
        "page_start": r["metadata"].get("page_start"),
        "page_end": r["metadata"].get("page_end"),
        "score": score,
        "content": r["content"],
        "chunker_version": r["chunker_version"],
        "embed_model": r["embed_model"],
    }
