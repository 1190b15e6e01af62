-- Segmented vector storage (issue 20, item 3): the HNSW index is paid in bulk, once per
-- segment, instead of per chunk.
--
-- * document_chunks is partitioned BY LIST (segment); a partition is a segment. New chunks
--   land in the one *growing* segment (the column's default), which has no HNSW index and is
--   searched exactly: a chunk is searchable as soon as its transaction commits.
-- * The compactor (`accessa run compactor`, accessa/segments.py) *rolls* a growing segment that
--   reached ACCESSA_SEGMENT_SEAL_ROWS rows or ACCESSA_SEGMENT_SEAL_AGE_S age (a new growing
--   partition is attached; the old one is 'sealing'), then *seals* it: one bulk HNSW build
--   (m 16, ef_construction 32, as 0004) in the same transaction that marks it 'sealed'.
--   A SIGKILL mid-build rolls the transaction back; the next run builds again.
-- * Search reads through the parent: each sealed partition by its own index, the growing one
--   by a sort, merged by a Merge Append (accessa/search.py).
-- * RLS and grants live on the parent (the policies of 0001/0017, unchanged); a partition
--   has RLS forced, no policy and no grant, so nobody reads one directly.
-- * A unique key of a partitioned table must hold the partition key: (chunk_id, embed_model)
--   stays unique by the finalizer's NOT EXISTS guard under the document's row lock.
-- * The compactor's role accessa_compactor owns nothing: it may EXECUTE the two SECURITY
--   DEFINER functions below (owned by accessa_owner) and read chunk_segments.
SET search_path = upload_pipeline, public;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'accessa_compactor') THEN
    CREATE ROLE accessa_compactor NOLOGIN;
  END IF;
END $$;

CREATE TABLE chunk_segments (
  segment      bigint PRIMARY KEY,
  state        text NOT NULL CHECK (state IN ('growing', 'sealing', 'sealed')),
  opened_at    timestamptz NOT NULL DEFAULT now(),
  sealing_at   timestamptz,
  sealed_at    timestamptz,
  seal_rows    bigint,
  seal_seconds double precision
);
CREATE UNIQUE INDEX chunk_segments_one_growing ON chunk_segments ((true)) WHERE state = 'growing';

-- The column default of every insert: SECURITY DEFINER, so an inserter needs no grant on
-- chunk_segments. The names are qualified; pg_catalog is searched first.
CREATE FUNCTION upload_pipeline.growing_segment() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
AS $$ SELECT segment FROM upload_pipeline.chunk_segments WHERE state = 'growing' $$;

-- The existing table becomes segment 1, sealed: its HNSW index (0004) is that segment's.
ALTER TABLE document_chunks RENAME TO document_chunks_s1;
ALTER INDEX document_chunks_document RENAME TO document_chunks_s1_document;
ALTER INDEX document_chunks_user RENAME TO document_chunks_s1_user;
ALTER INDEX document_chunks_content_tsv RENAME TO document_chunks_s1_content_tsv;
ALTER INDEX document_chunks_embedding_hnsw RENAME TO document_chunks_s1_embedding_hnsw;
ALTER TABLE document_chunks_s1 DROP CONSTRAINT document_chunks_pkey;
ALTER TABLE document_chunks_s1
  RENAME CONSTRAINT document_chunks_document_id_fkey TO document_chunks_s1_document_id_fkey;
ALTER TABLE document_chunks_s1 ADD COLUMN segment bigint NOT NULL DEFAULT 1;
ALTER TABLE document_chunks_s1 ALTER COLUMN segment DROP DEFAULT;
DROP POLICY IF EXISTS document_chunks_owner ON document_chunks_s1;
DROP POLICY IF EXISTS document_chunks_pipeline ON document_chunks_s1;
DROP POLICY IF EXISTS document_chunks_api ON document_chunks_s1;
DO $$
DECLARE g record;
BEGIN
  FOR g IN SELECT DISTINCT a.grantee::regrole AS role
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
           WHERE c.oid = 'upload_pipeline.document_chunks_s1'::regclass
             AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
    EXECUTE format('REVOKE ALL ON upload_pipeline.document_chunks_s1 FROM %s', g.role);
  END LOOP;
END $$;

CREATE TABLE document_chunks (
  chunk_id        uuid NOT NULL,
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
  created_at      timestamptz NOT NULL DEFAULT now(),
  content_tsv     tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
  segment         bigint NOT NULL DEFAULT upload_pipeline.growing_segment(),
  PRIMARY KEY (chunk_id, embed_model, segment)
) PARTITION BY LIST (segment);
CREATE INDEX document_chunks_document ON document_chunks (document_id, chunker_version, embed_model);
CREATE INDEX document_chunks_user ON document_chunks (user_id);
CREATE INDEX document_chunks_content_tsv ON document_chunks USING gin (content_tsv);
-- The three indexes of segment 1 become partitions of these (same definitions).
ALTER TABLE document_chunks ATTACH PARTITION document_chunks_s1 FOR VALUES IN (1);
CREATE TABLE document_chunks_s2 PARTITION OF document_chunks FOR VALUES IN (2);

ALTER TABLE document_chunks_s1 ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE document_chunks_s2 ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;

-- The parent's grants and policies, as 0001 and 0017 made them for the table.
GRANT SELECT ON document_chunks TO accessa_app, accessa_api;
GRANT SELECT, INSERT ON document_chunks TO accessa_finalizer;
GRANT SELECT, INSERT, UPDATE, DELETE ON document_chunks TO accessa_ops;
GRANT SELECT ON chunk_segments TO accessa_ops, accessa_compactor;
GRANT USAGE ON SCHEMA upload_pipeline TO accessa_compactor;
ALTER TABLE document_chunks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY document_chunks_owner ON document_chunks TO accessa_app
  USING (user_id = upload_pipeline.current_user_id());
CREATE POLICY document_chunks_pipeline ON document_chunks TO accessa_owner, accessa_parser,
  accessa_chunker, accessa_embedder, accessa_finalizer, accessa_ops
  USING (true) WITH CHECK (true);
CREATE POLICY document_chunks_api ON document_chunks TO accessa_api
  USING (upload_pipeline.current_user_id() IS NULL)
  WITH CHECK (upload_pipeline.current_user_id() IS NULL);
INSERT INTO chunk_segments (segment, state, sealing_at, sealed_at, seal_rows)
SELECT 1, 'sealed', now(), now(), count(*) FROM document_chunks WHERE segment = 1;
INSERT INTO chunk_segments (segment, state) VALUES (2, 'growing');

-- Roll: when the growing segment holds `max_rows` rows or its oldest row is `max_age_s` old,
-- attach the next growing partition and mark this one 'sealing'; return it (NULL: not due).
-- CREATE TABLE + ATTACH takes SHARE UPDATE EXCLUSIVE on the parent: reads and writes go on.
-- A statement that read the old default before this commits still lands in the old segment;
-- the seal's CREATE INDEX waits for it (SHARE lock on the partition).
CREATE FUNCTION upload_pipeline.roll_segment(max_rows bigint, max_age_s double precision)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = upload_pipeline, public
AS $$
DECLARE
  g bigint;
  n bigint;
  oldest timestamptz;
  part text;
BEGIN
  SELECT segment INTO g FROM chunk_segments WHERE state = 'growing' FOR UPDATE;
  SELECT count(*), min(created_at) INTO n, oldest FROM document_chunks WHERE segment = g;
  IF n = 0 OR (n < max_rows AND oldest > now() - make_interval(secs => max_age_s)) THEN
    RETURN NULL;
  END IF;
  part := format('document_chunks_s%s', g + 1);
  EXECUTE format('CREATE TABLE %I (LIKE document_chunks INCLUDING DEFAULTS INCLUDING GENERATED)',
                 part);
  EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', part);
  EXECUTE format('ALTER TABLE document_chunks ATTACH PARTITION %I FOR VALUES IN (%s)', part, g + 1);
  UPDATE chunk_segments SET state = 'sealing', sealing_at = now() WHERE segment = g;
  INSERT INTO chunk_segments (segment, state) VALUES (g + 1, 'growing');
  RETURN g;
END $$;

-- Seal: build segment `seg`'s HNSW index in bulk and mark it sealed, in one transaction (a
-- crash rolls both back). The row lock makes a second compactor wait, then find it sealed.
-- Returns the build's seconds, NULL when `seg` is not 'sealing'.
CREATE FUNCTION upload_pipeline.seal_segment(seg bigint) RETURNS double precision
LANGUAGE plpgsql SECURITY DEFINER SET search_path = upload_pipeline, public
AS $$
DECLARE
  started timestamptz := clock_timestamp();
  n bigint;
BEGIN
  PERFORM 1 FROM chunk_segments WHERE segment = seg AND state = 'sealing' FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING hnsw (embedding vector_cosine_ops) '
                 'WITH (m = 16, ef_construction = 32)',
                 format('document_chunks_s%s_embedding_hnsw', seg),
                 format('document_chunks_s%s', seg));
  SELECT count(*) INTO n FROM document_chunks WHERE segment = seg;
  UPDATE chunk_segments
  SET state = 'sealed', sealed_at = now(), seal_rows = n,
      seal_seconds = extract(epoch FROM clock_timestamp() - started)
  WHERE segment = seg;
  RETURN extract(epoch FROM clock_timestamp() - started);
END $$;

-- For the compactor's metrics and `accessa segments status`: every segment, with the growing
-- one's exact row count (a sealed one's as it was sealed).
CREATE FUNCTION upload_pipeline.segment_stats()
RETURNS TABLE (segment bigint, state text, rows bigint, opened_at timestamptz,
               sealed_at timestamptz, seal_seconds double precision, indexed boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = upload_pipeline, public
AS $$
  SELECT s.segment, s.state,
         CASE WHEN s.state = 'sealed' THEN s.seal_rows
              ELSE (SELECT count(*) FROM document_chunks c WHERE c.segment = s.segment) END,
         s.opened_at, s.sealed_at, s.seal_seconds,
         to_regclass(format('upload_pipeline.document_chunks_s%s_embedding_hnsw', s.segment))
           IS NOT NULL
  FROM chunk_segments s ORDER BY s.segment
$$;

REVOKE EXECUTE ON FUNCTION upload_pipeline.roll_segment(bigint, double precision),
  upload_pipeline.seal_segment(bigint), upload_pipeline.segment_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upload_pipeline.roll_segment(bigint, double precision),
  upload_pipeline.seal_segment(bigint), upload_pipeline.segment_stats()
  TO accessa_compactor, accessa_ops;
