-- Retention (issue 19): `accessa gc` deletes what outlived ACCESSA_RETENTION_*: stage dedup rows,
-- published outbox rows, cached embeddings and redrive records. Each delete walks one of these
-- indexes from its oldest row, a batch at a time, instead of scanning the table.
CREATE INDEX IF NOT EXISTS processed_events_created
  ON upload_pipeline.processed_events (created_at);
CREATE INDEX IF NOT EXISTS outbox_published
  ON upload_pipeline.outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS embedding_cache_created
  ON upload_pipeline.embedding_cache (created_at);
CREATE INDEX IF NOT EXISTS dlq_redrives_redriven
  ON upload_pipeline.dlq_redrives (redriven_at);

-- The gc runs as accessa_ops (0017 made it): it deletes from these four tables.
GRANT SELECT, DELETE ON upload_pipeline.processed_events, upload_pipeline.outbox,
  upload_pipeline.embedding_cache, upload_pipeline.dlq_redrives TO accessa_ops;
