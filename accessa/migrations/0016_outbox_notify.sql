-- Idle latency (issue 14): an INSERT into `outbox` NOTIFYs channel `outbox` when its transaction
-- commits, so relays in other processes (API replicas, `accessa run relay`) claim the row at
-- once instead of at their next poll. Per statement with an empty payload: Postgres folds
-- identical notifications of one transaction into one, so a batch of rows wakes a relay once.
-- The relay keeps polling (ACCESSA_OUTBOX_POLL_S) for anything a lost LISTEN connection missed.
CREATE OR REPLACE FUNCTION upload_pipeline.outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outbox', '');
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS outbox_notify ON upload_pipeline.outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON upload_pipeline.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION upload_pipeline.outbox_notify();
