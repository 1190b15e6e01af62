-- Vector search through an HNSW index over each embedding's binary quantization (one bit per
-- dimension, Hamming distance: 192 bytes a node instead of 6 KB) in place of the vector(1536)
-- cosine index. Search takes the index's nearest candidates (oversampled, see
-- accessa/search.py) and re-ranks them by exact cosine distance over the stored vectors, which
-- are unchanged. Inserting into it costs Postgres a fraction of the CPU and WAL of the vector
-- index; bench/bench_pgcost.py (make bench, --only pgcost) measures both per 1000 chunks and
-- recall@10 against exact search in one run (figures in the README's Benchmarks).
-- ef_construction 64, not 0004's 32: Hamming distances are small integers with many ties, and
-- a graph built at 32 missed a sixth of the true top 10 of one test's clustered set (0.85 vs
-- 0.995 at 64, tests/integration/test_search_index.py); bits are cheap to compare.
--
-- Built inside the migrator's transaction: CREATE INDEX CONCURRENTLY cannot run in one. The
-- build holds off writes to document_chunks (searches wait on the dropped index's lock) until
-- the commit; a binary index builds in seconds per 100k rows (the bench's build_s).
SET search_path = upload_pipeline, public;

DROP INDEX IF EXISTS document_chunks_embedding_hnsw;
CREATE INDEX document_chunks_embedding_bq_hnsw ON document_chunks
  USING hnsw ((binary_quantize(embedding)::bit(1536)) bit_hamming_ops)
  WITH (m = 16, ef_construction = 64);
