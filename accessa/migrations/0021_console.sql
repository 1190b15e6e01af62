-- Operator's console (issue 22): one-time login tokens and sessions, stored as SHA-256 of the
-- random values (a database dump leaks no usable token), and the indexes the console's job list
-- pages through. Only accessa_ops reaches them: `accessa console` issues tokens and the console
-- process (`accessa run console`, the ops identity) spends them and keeps the sessions.
SET search_path = upload_pipeline, public;

CREATE TABLE IF NOT EXISTS console_tokens (
  token_sha256 text PRIMARY KEY,
  operator     text NOT NULL,
  role         text NOT NULL DEFAULT 'ops',
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz
);

CREATE TABLE IF NOT EXISTS console_sessions (
  session_sha256 text PRIMARY KEY,
  operator       text NOT NULL,
  role           text NOT NULL,
  csrf           text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL
);

-- Keyset pages of every user's jobs, newest first, with or without a state filter.
CREATE INDEX IF NOT EXISTS upload_jobs_created ON upload_jobs (created_at DESC, job_id DESC);
CREATE INDEX IF NOT EXISTS upload_jobs_state_created
  ON upload_jobs (state, created_at DESC, job_id DESC);

GRANT SELECT, INSERT, UPDATE, DELETE ON console_tokens, console_sessions TO accessa_ops;
