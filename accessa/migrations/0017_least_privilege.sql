-- Least privilege in Postgres (issue 19): no runtime process is a superuser any more.
--
-- * accessa_owner (NOLOGIN) owns the schema and every object in it; migrations run as it
--   (`accessa migrate` logs in as a member, e.g. accessa_migrator, and does SET ROLE).
-- * One NOLOGIN role per process holds the grants that process uses: accessa_api (the API and
--   its outbox relay), accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer,
--   accessa_ops (CLI and operator tools). A login is either the role itself (the embedded
--   default makes them LOGIN with a generated password) or an operator's login granted it.
-- * FORCE ROW LEVEL SECURITY on the user-facing tables: even the owner passes the policies.
--   The stages and ops work across users (a policy each); the API only while no user is set
--   (housekeeping, relay, webhooks): a user transaction (SET LOCAL ROLE accessa_app with
--   app.user_id set) that does RESET ROLE falls back to the API's role and still sees only
--   its own user's rows.
-- Idempotent: later migrations (0018+) GRANT their tables to these roles themselves.
SET search_path = upload_pipeline, public;

DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['accessa_owner', 'accessa_api', 'accessa_parser', 'accessa_chunker',
                           'accessa_embedder', 'accessa_finalizer', 'accessa_ops',
                           'accessa_migrator'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
END $$;

-- Existing objects change hands (a no-op where accessa_owner owns them already).
DO $$
DECLARE obj record;
BEGIN
  EXECUTE 'ALTER SCHEMA upload_pipeline OWNER TO accessa_owner';
  FOR obj IN SELECT c.oid::regclass AS name FROM pg_class c
             WHERE c.relnamespace = 'upload_pipeline'::regnamespace
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f') LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO accessa_owner', obj.name);
  END LOOP;
  FOR obj IN SELECT p.oid::regprocedure AS name FROM pg_proc p
             WHERE p.pronamespace = 'upload_pipeline'::regnamespace LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO accessa_owner', obj.name);
  END LOOP;
  IF to_regclass('public.accessa_migrations') IS NOT NULL THEN
    EXECUTE 'ALTER TABLE public.accessa_migrations OWNER TO accessa_owner';
  END IF;
END $$;

GRANT USAGE ON SCHEMA upload_pipeline
  TO accessa_api, accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer,
     accessa_ops;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA upload_pipeline
  TO accessa_api, accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer,
     accessa_ops;

-- Every stage's runtime (accessa/runtime, accessa/jobs.py): the job and its document, dedup
-- rows, delivery counts, the audit trail, tombstones of deleted jobs.
GRANT SELECT, UPDATE ON upload_jobs
  TO accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer;
GRANT SELECT ON documents, deleted_jobs
  TO accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer;
GRANT SELECT, INSERT ON processed_events, events
  TO accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer;
GRANT SELECT, INSERT, UPDATE, DELETE ON delivery_attempts
  TO accessa_parser, accessa_chunker, accessa_embedder, accessa_finalizer;

-- Each stage's own tables.
GRANT UPDATE ON documents TO accessa_parser;
GRANT SELECT, INSERT, UPDATE, DELETE ON llamaparse_jobs TO accessa_parser;
GRANT SELECT, INSERT ON document_chunk_buffer TO accessa_chunker;
GRANT SELECT ON document_chunk_buffer TO accessa_embedder;
GRANT SELECT, INSERT ON document_vector_buffer, embedding_cache TO accessa_embedder;
GRANT SELECT, INSERT, UPDATE ON embedding_spend TO accessa_embedder;
GRANT UPDATE ON documents TO accessa_finalizer;
GRANT SELECT, INSERT ON document_chunks TO accessa_finalizer;
GRANT SELECT, DELETE ON document_chunk_buffer, document_vector_buffer TO accessa_finalizer;

-- The API: user requests as accessa_app (SET LOCAL ROLE), the rest as itself.
GRANT accessa_app TO accessa_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON documents TO accessa_api;
GRANT SELECT, INSERT, UPDATE ON upload_jobs, outbox TO accessa_api;
GRANT SELECT, INSERT ON events TO accessa_api;
GRANT SELECT ON document_chunks, embedding_spend TO accessa_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_counters TO accessa_api;
GRANT SELECT, DELETE ON deleted_jobs TO accessa_api;
GRANT SELECT, UPDATE ON llamaparse_jobs TO accessa_api;

-- Operators (reprocess, dlq, status, cost, gc) read and repair any table's rows, no DDL.
GRANT accessa_app TO accessa_ops;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA upload_pipeline TO accessa_ops;
GRANT SELECT ON public.accessa_migrations TO accessa_ops;

-- Row-level security the owner cannot skip either.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['documents', 'upload_jobs', 'document_chunks', 'events'] LOOP
    EXECUTE format('ALTER TABLE upload_pipeline.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE upload_pipeline.%I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON upload_pipeline.%I', t || '_pipeline', t);
    EXECUTE format('CREATE POLICY %I ON upload_pipeline.%I TO accessa_owner, accessa_parser, '
                   'accessa_chunker, accessa_embedder, accessa_finalizer, accessa_ops '
                   'USING (true) WITH CHECK (true)', t || '_pipeline', t);
    EXECUTE format('DROP POLICY IF EXISTS %I ON upload_pipeline.%I', t || '_api', t);
    EXECUTE format('CREATE POLICY %I ON upload_pipeline.%I TO accessa_api '
                   'USING (upload_pipeline.current_user_id() IS NULL) '
                   'WITH CHECK (upload_pipeline.current_user_id() IS NULL)', t || '_api', t);
  END LOOP;
END $$;
