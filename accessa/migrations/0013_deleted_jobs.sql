-- Tombstones of deleted jobs (issue 15): a job row goes when its document is deleted (the
-- foreign key cascades), and an event still in flight for it must not land in a DLQ as if
-- something were broken. A trigger (SECURITY DEFINER: whoever deletes) keeps the job's ids, so
-- a stage can tell "deleted" (skip, count, log) from "never existed" (forged or mixed up: DLQ).
-- The API's housekeeping drops tombstones after 30 days, long past any topic's retention.
CREATE TABLE IF NOT EXISTS upload_pipeline.deleted_jobs (
  job_id      uuid PRIMARY KEY,
  document_id uuid NOT NULL,
  user_id     uuid NOT NULL,
  deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION upload_pipeline.upload_jobs_tombstone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = upload_pipeline, public AS $$
BEGIN
  INSERT INTO upload_pipeline.deleted_jobs (job_id, document_id, user_id)
  VALUES (OLD.job_id, OLD.document_id, OLD.user_id) ON CONFLICT (job_id) DO NOTHING;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS upload_jobs_tombstone ON upload_pipeline.upload_jobs;
CREATE TRIGGER upload_jobs_tombstone AFTER DELETE ON upload_pipeline.upload_jobs
  FOR EACH ROW EXECUTE FUNCTION upload_pipeline.upload_jobs_tombstone();
