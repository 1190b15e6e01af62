-- Raw objects (issue 19.2). `accessa storage gc` asks, per page of listed objects, which
-- documents name them: an index on raw_path keeps that an index lookup, not a scan per page.
-- A presigned S3 upload's raw_path moves to its verified key (raw/<user>/<doc>/<sha>.pdf)
-- at `complete`; the object the URL wrote is then named by no row and gc reclaims it.
CREATE INDEX IF NOT EXISTS documents_raw_path ON upload_pipeline.documents (raw_path);

-- The gc runs as the operators' login (0017, when it exists): it reads documents and jobs.
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'accessa_ops') THEN
    GRANT USAGE ON SCHEMA upload_pipeline TO accessa_ops;
    GRANT SELECT ON upload_pipeline.documents, upload_pipeline.upload_jobs TO accessa_ops;
  END IF;
END $$;
