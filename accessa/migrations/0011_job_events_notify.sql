-- Live job progress (issue 15): every `events` row of a job NOTIFYs channel `job_events` with
-- '<job_id>:<event id>' when its transaction commits. A trigger rather than a call in
-- accessa/jobs.py catches every writer (API, stages, operations, SQL by hand). The API holds one
-- LISTEN connection per process and fans the notifications out to its SSE streams
-- (GET /api/v2/jobs/{id}/events), which then read the rows themselves under RLS.
CREATE OR REPLACE FUNCTION upload_pipeline.events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.job_id IS NOT NULL THEN
    PERFORM pg_notify('job_events', NEW.job_id::text || ':' || NEW.id::text);
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS events_notify ON upload_pipeline.events;
CREATE TRIGGER events_notify AFTER INSERT ON upload_pipeline.events
  FOR EACH ROW EXECUTE FUNCTION upload_pipeline.events_notify();
