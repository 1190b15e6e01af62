-- Outbox rows that can never be published (issue 15): a missing topic, a topic the relay may
-- not write, a record the broker refuses as too large. The relay marks such a row failed with
-- the reason instead of retrying it forever in front of the rows behind it; `accessa status`
-- counts them and `accessa dlq list` lists them beside the stages' dead letters.
ALTER TABLE upload_pipeline.outbox
  ADD COLUMN IF NOT EXISTS failed_at timestamptz,
  ADD COLUMN IF NOT EXISTS failure text;
CREATE INDEX IF NOT EXISTS outbox_pending ON upload_pipeline.outbox (id)
  WHERE published_at IS NULL AND failed_at IS NULL;
DROP INDEX IF EXISTS upload_pipeline.outbox_unpublished;
CREATE INDEX IF NOT EXISTS outbox_failed ON upload_pipeline.outbox (failed_at)
  WHERE failed_at IS NOT NULL;
