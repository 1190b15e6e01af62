-- Versioned reprocessing (`accessa reprocess`). A (chunker_version, embed_model) pair is a
-- version of a document's chunks; several live side by side in document_chunks. Search reads
-- only documents.active_*, which the finalizer switches in the transaction that writes the new
-- version; `accessa reprocess gc` deletes the other versions once the active one is older
-- than ACCESSA_REPROCESS_GRACE_S.
SET search_path = upload_pipeline, public;

-- A chunk id already includes its chunker version; the same chunk embedded by another model
-- is another row. Every model embeds at ACCESSA_EMBED_DIMENSIONS (the embedder refuses models
-- that cannot), so the one vector(1536) column and its HNSW index serve every version.
ALTER TABLE document_chunks DROP CONSTRAINT document_chunks_pkey,
  ADD PRIMARY KEY (chunk_id, embed_model);

-- Buffers belong to their job: a reprocess builds its version beside the leftovers of any
-- failed job of the same document (the unique keys used to be per document).
ALTER TABLE document_chunk_buffer
  DROP CONSTRAINT document_chunk_buffer_pkey,
  DROP CONSTRAINT document_chunk_buffer_document_id_chunker_version_ordinal_key,
  ADD PRIMARY KEY (job_id, chunk_id),
  ADD UNIQUE (job_id, chunker_version, ordinal);
DROP INDEX document_chunk_buffer_job;  -- the primary key leads with job_id
ALTER TABLE document_vector_buffer DROP CONSTRAINT document_vector_buffer_pkey,
  ADD PRIMARY KEY (job_id, chunk_id, embed_model);
DROP INDEX document_vector_buffer_job;

-- When the active version became active: other versions are garbage after the grace period.
ALTER TABLE documents ADD COLUMN active_since timestamptz;
UPDATE documents SET active_since = updated_at WHERE active_chunker_version IS NOT NULL;

-- A reprocess is a job of its own (kind 'reprocess', the request in `reprocess`), so the
-- stages, the audit trail and `accessa status` treat it like any job. One unfinished
-- reprocess per document: re-running the same request finds and resumes it.
ALTER TABLE upload_jobs
  ADD COLUMN kind text NOT NULL DEFAULT 'upload' CHECK (kind IN ('upload', 'reprocess')),
  ADD COLUMN reprocess jsonb;
CREATE UNIQUE INDEX upload_jobs_one_reprocess ON upload_jobs (document_id)
  WHERE kind = 'reprocess' AND state NOT IN ('done', 'deadletter');
