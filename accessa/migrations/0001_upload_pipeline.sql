-- Upload pipeline schema: documents, jobs, buffers, final chunks, audit events, outbox,
-- stage dedup. Row-level security by user on user-facing tables: the application runs user
-- requests as role accessa_app with `app.user_id` set per transaction (see accessa/db.py).

CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS upload_pipeline;
SET search_path = upload_pipeline, public;

DO $$ BEGIN
  CREATE ROLE accessa_app NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE OR REPLACE FUNCTION upload_pipeline.current_user_id() RETURNS uuid
LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;

CREATE TABLE documents (
  document_id   uuid PRIMARY KEY,
  user_id       uuid NOT NULL,
  sha256        text NOT NULL CHECK (length(sha256) = 64),
  size          bigint NOT NULL CHECK (size > 0),
  filename      text NOT NULL,
  mime          text NOT NULL DEFAULT 'application/pdf',
  pages         integer,
  raw_path      text NOT NULL,
  parsed_path   text,
  active_chunker_version text,
  active_embed_model     text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, sha256)
);

CREATE TABLE upload_jobs (
  job_id          uuid PRIMARY KEY,
  user_id         uuid NOT NULL,
  document_id     uuid NOT NULL REFERENCES documents (document_id) ON DELETE CASCADE,
  status          text NOT NULL DEFAULT 'uploaded' CHECK (status IN (
                    'uploaded', 'parse_queued', 'parsed', 'parse_validated', 'chunking',
                    'chunks_stored', 'embedding_queued', 'embedding_in_progress',
                    'embeddings_stored', 'complete', 'failed_parse', 'failed_chunking',
                    'failed_embedding')),
  state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'working', 'retryable', 'done', 'deadletter')),
  stage           text NOT NULL DEFAULT 'queued',
  progress        jsonb NOT NULL DEFAULT '{"percent": 0}'::jsonb,
  parsed_path     text,
  parsed_sha256   text,
  pages           integer,
  chunks_version  text,
  chunk_count     integer,
  vector_count    integer,
  embed_model     text,
  embed_version   text,
  embed_tokens    bigint NOT NULL DEFAULT 0,
  cost_usd        numeric(14, 8) NOT NULL DEFAULT 0,
  retry_count     integer NOT NULL DEFAULT 0,
  last_error      jsonb,
  correlation_id  text NOT NULL,
  stage_times     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  completed_at    timestamptz
);
CREATE INDEX upload_jobs_user_created ON upload_jobs (user_id, created_at DESC, job_id DESC);
CREATE INDEX upload_jobs_document ON upload_jobs (document_id, created_at DESC);
CREATE INDEX upload_jobs_unfinished ON upload_jobs (created_at) WHERE state <> 'done';

CREATE TABLE document_chunk_buffer (
  chunk_id        uuid PRIMARY KEY,
  job_id          uuid NOT NULL REFERENCES upload_jobs (job_id) ON DELETE CASCADE,
  document_id     uuid NOT NULL,
  user_id         uuid NOT NULL,
  chunker_version text NOT NULL,
  ordinal         integer NOT NULL,
  content         text NOT NULL,
  content_sha256  text NOT NULL,
  token_count     integer NOT NULL,
  metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (document_id, chunker_version, ordinal)
);
CREATE INDEX document_chunk_buffer_job ON document_chunk_buffer (job_id);

CREATE TABLE document_vector_buffer (
  chunk_id    uuid NOT NULL,
  embed_model text NOT NULL,
  job_id      uuid NOT NULL REFERENCES upload_jobs (job_id) ON DELETE CASCADE,
  document_id uuid NOT NULL,
  embedding   vector NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (chunk_id, embed_model)
);
CREATE INDEX document_vector_buffer_job ON document_vector_buffer (job_id);

-- Content-hash cache: the same chunk text + model is never paid for twice.
CREATE TABLE embedding_cache (
  content_sha256 text NOT NULL,
  embed_model    text NOT NULL,
  dimensions     integer NOT NULL,
  embedding      vector NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (content_sha256, embed_model, dimensions)
);

CREATE TABLE document_chunks (
  chunk_id        uuid PRIMARY KEY,
  document_id     uuid NOT NULL REFERENCES documents (document_id) ON DELETE CASCADE,
  user_id         uuid NOT NULL,
  job_id          uuid NOT NULL,
  chunker_version text NOT NULL,
  embed_model     text NOT NULL,
  ordinal         integer NOT NULL,
  content         text NOT NULL,
  content_sha256  text NOT NULL,
  token_count     integer NOT NULL,
  metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
  embedding       vector(1536) NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX document_chunks_document ON document_chunks (document_id, chunker_version, embed_model);
CREATE INDEX document_chunks_user ON document_chunks (user_id);
CREATE INDEX document_chunks_embedding_hnsw ON document_chunks
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- Append-only audit: every job transition, with its correlation id.
CREATE TABLE events (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_id         uuid,
  document_id    uuid,
  user_id        uuid,
  stage          text NOT NULL,
  kind           text NOT NULL,
  status         text,
  correlation_id text,
  detail         jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_job ON events (job_id, id);
CREATE OR REPLACE FUNCTION upload_pipeline.events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'events is append-only'; END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION upload_pipeline.events_append_only();

-- Transactional outbox: rows written with the job, published by the relay.
CREATE TABLE outbox (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic        text NOT NULL,
  key          bytea,
  payload      bytea NOT NULL,
  headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Stage dedup: one row per (consumer, input event id), written in the stage's own
-- transaction with the output it emits. A redelivered event skips the handler and
-- re-emits the stored output (same event id, so the next stage dedups it too).
CREATE TABLE processed_events (
  consumer     text NOT NULL,
  event_id     uuid NOT NULL,
  output_topic text,
  output_key   bytea,
  output_value bytea,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

-- Row-level security on user-facing tables.
GRANT USAGE ON SCHEMA upload_pipeline TO accessa_app;
GRANT SELECT, INSERT, UPDATE ON documents, upload_jobs TO accessa_app;
GRANT SELECT ON document_chunks, events TO accessa_app;
GRANT INSERT ON events, outbox TO accessa_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA upload_pipeline TO accessa_app;

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE upload_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE document_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY documents_owner ON documents TO accessa_app
  USING (user_id = upload_pipeline.current_user_id())
  WITH CHECK (user_id = upload_pipeline.current_user_id());
CREATE POLICY upload_jobs_owner ON upload_jobs TO accessa_app
  USING (user_id = upload_pipeline.current_user_id())
  WITH CHECK (user_id = upload_pipeline.current_user_id());
CREATE POLICY document_chunks_owner ON document_chunks TO accessa_app
  USING (user_id = upload_pipeline.current_user_id());
CREATE POLICY events_owner ON events TO accessa_app
  USING (user_id = upload_pipeline.current_user_id())
  WITH CHECK (user_id = upload_pipeline.current_user_id());
