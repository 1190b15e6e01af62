-- The OpenTelemetry trace of a job's latest run (issue 15): set when its event is queued in
-- the outbox with tracing on; `GET /api/v2/jobs/{id}` and `accessa jobs --json` show it.
ALTER TABLE upload_pipeline.upload_jobs ADD COLUMN IF NOT EXISTS trace_id text;
