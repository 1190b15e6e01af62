-- Abandoned two-step uploads (issue 15): a declared upload whose bytes never came within the
-- signed URL's lifetime plus ACCESSA_UPLOAD_EXPIRY_GRACE_S becomes status `expired` (state
-- `done`: terminal, nothing for an operator to act on), freeing the user's active-job slot.
ALTER TABLE upload_pipeline.upload_jobs DROP CONSTRAINT IF EXISTS upload_jobs_status_check;
ALTER TABLE upload_pipeline.upload_jobs ADD CONSTRAINT upload_jobs_status_check CHECK (status IN (
  'uploaded', 'parse_queued', 'parsed', 'parse_validated', 'chunking', 'chunks_stored',
  'embedding_queued', 'embedding_in_progress', 'embeddings_stored', 'complete', 'failed_parse',
  'failed_chunking', 'failed_embedding', 'expired'));
-- The housekeeping sweep's scan: only jobs still waiting for their bytes.
CREATE INDEX IF NOT EXISTS upload_jobs_awaiting_bytes ON upload_pipeline.upload_jobs (created_at)
  WHERE stage = 'queued' AND status = 'uploaded';
