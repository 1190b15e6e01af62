-- Document quality (issue 22): the parser's per page figures and the flags they raise, set in
-- the parser's commit; null for jobs parsed before this or by a backend without figures.
-- Shape: {"flags": [...], "reasons": [...], "pages": [{"page": n, "text_words": .., "ocr_words":
-- .., "ocr_confidence": .., "image_coverage": ..}]}. `GET /api/v2/jobs/{id}` and `accessa jobs`
-- show it; `?quality=FLAG` lists the jobs with a flag.
ALTER TABLE upload_pipeline.upload_jobs ADD COLUMN IF NOT EXISTS quality jsonb;
CREATE INDEX IF NOT EXISTS upload_jobs_quality_flags
  ON upload_pipeline.upload_jobs USING gin ((quality -> 'flags'));

-- Per-process roles (migration 0017) grant by column: the parser writes this one, the API
-- reads it. Where 0017 has not run, the owner role does both and nothing is granted.
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'accessa_parser') THEN
    GRANT SELECT (quality), UPDATE (quality) ON upload_pipeline.upload_jobs TO accessa_parser;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'accessa_api') THEN
    GRANT SELECT (quality) ON upload_pipeline.upload_jobs TO accessa_api;
  END IF;
END $$;
