-- Raw objects (issue 19.2). `accessa storage gc` asks, per page of listed objects, which
-- documents name them: an index on raw_path keeps that an index lookup, not a scan per page.
-- A presigned S3 upload's raw_path moves to its verified key (raw/<user>/<doc>/<sha>.pdf)
-- at `complete`; the object the URL wrote is then named by no row and gc reclaims it.
CREATE INDEX IF NOT EXISTS documents_raw_path ON upload_pipeline.documents (raw_path);

-- `accessa storage gc` runs as accessa_ops (0017), which already reads documents and jobs.
