-- Document quality (issue 22): the parser's per page figures and the flags they raise, set in
-- the parser's commit; null for jobs parsed before this or by a backend without figures.
-- Shape: {"flags": [...], "reasons": [...], "pages": [{"page": n, "text_words": .., "ocr_words":
-- .., "ocr_confidence": .., "image_coverage": ..}]}. `GET /api/v2/jobs/{id}` and `accessa jobs`
-- show it; `?quality=FLAG` lists the jobs with a flag.
ALTER TABLE upload_pipeline.upload_jobs ADD COLUMN IF NOT EXISTS quality jsonb;
CREATE INDEX IF NOT EXISTS upload_jobs_quality_flags
  ON upload_pipeline.upload_jobs USING gin ((quality -> 'flags'));

-- Granted by column (0017's roles): the parser writes this one, the API reads it.
GRANT SELECT (quality), UPDATE (quality) ON upload_pipeline.upload_jobs TO accessa_parser;
GRANT SELECT (quality) ON upload_pipeline.upload_jobs TO accessa_api;
