-- Producer API: rate-limit counters shared by every API replica.
-- The `limits` library has no Postgres storage and no Redis runs here, so fixed-window
-- counters live in this table: one atomic upsert per hit, the same for every replica.
-- UNLOGGED: counters are disposable; a crash that resets them only forgives some requests.
CREATE UNLOGGED TABLE upload_pipeline.rate_limit_counters (
  bucket       text NOT NULL,
  window_start timestamptz NOT NULL,
  hits         integer NOT NULL,
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limit_counters_expires ON upload_pipeline.rate_limit_counters (expires_at);
GRANT SELECT, INSERT, UPDATE ON upload_pipeline.rate_limit_counters TO accessa_app;
