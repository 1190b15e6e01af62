-- bench/bench_hnsw.py: with ef_construction = 32 (and the finalizer committing documents from
-- parallel connections) incremental inserts run ~2.2x faster than m=16/ef=64 from one
-- connection, at the same recall@10 (search runs with hnsw.ef_search = 100).
DROP INDEX IF EXISTS upload_pipeline.document_chunks_embedding_hnsw;
CREATE INDEX document_chunks_embedding_hnsw ON upload_pipeline.document_chunks
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 32);
