-- Vectors inline in the heap, not in the TOAST table. A vector(1536) is 6 KB, and pgvector's
-- type stores it EXTERNAL: out of line, in three TOAST chunks, so every distance an exact sort
-- computes (the growing segment, callers with few chunks, segments holding few of a caller's)
-- first fetches those chunks through the TOAST index, and every insert writes them (and the
-- seal's bulk build reads them back). Exact top-10 over 5000 such rows here: 21.8 ms EXTERNAL,
-- 6.1 ms inline (docs/performance.md).
-- MAIN keeps the vector in the row, and out of line only as a last resort (a row that cannot
-- fit its page otherwise: never "row is too big"). toast_tuple_target 8160 (the most a page
-- takes) is what lets it stay: under the default 2 KB target, a row holding a 6 KB vector is
-- always "too long", so the toaster would move every other column out of line too (content,
-- metadata, content_tsv) and then the vector itself. Rows already written keep their storage
-- until rewritten; new rows, in every segment, are inline.
ALTER TABLE upload_pipeline.document_chunks ALTER COLUMN embedding SET STORAGE MAIN;

-- Counting the caller's chunks per segment from an index alone. Every vector search first asks
-- upload_pipeline.user_segment_rows (0024) how many of the caller's chunks each segment holds;
-- with the index on (user_id) each row counted was also read from the heap for its segment,
-- and with vectors inline (above) every row is a page of its own: 16 ms of a 35 ms search for
-- a caller with 24k of 100k chunks. On (user_id, segment) the count is an index-only scan
-- once the segment's visibility map is set, which the compactor now does right after sealing
-- (VACUUM, for which it is granted MAINTAIN on every segment): 1.4 ms (docs/performance.md).
CREATE INDEX document_chunks_user_segment ON upload_pipeline.document_chunks (user_id, segment);
DROP INDEX upload_pipeline.document_chunks_user;  -- its lookups are the new index's prefix
DO $$
DECLARE part regclass;
BEGIN
  FOR part IN SELECT inhrelid::regclass FROM pg_inherits
              WHERE inhparent = 'upload_pipeline.document_chunks'::regclass LOOP
    EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 8160)', part);
    EXECUTE format('GRANT MAINTAIN ON %s TO accessa_compactor', part);
  END LOOP;
END $$;

-- Each new growing segment takes the parent's storage, the same target (LIKE copies the
-- storage only when asked; storage parameters are per table) and the compactor's MAINTAIN.
CREATE OR REPLACE FUNCTION upload_pipeline.roll_segment(max_rows bigint, max_age_s double precision)
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
  EXECUTE format('CREATE TABLE %I (LIKE document_chunks INCLUDING DEFAULTS INCLUDING GENERATED '
                 'INCLUDING STORAGE) WITH (toast_tuple_target = 8160)', part);
  EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', part);
  EXECUTE format('GRANT MAINTAIN ON %I TO accessa_compactor', part);
  EXECUTE format('ALTER TABLE document_chunks ATTACH PARTITION %I FOR VALUES IN (%s)', part, g + 1);
  UPDATE chunk_segments SET state = 'sealing', sealing_at = now() WHERE segment = g;
  INSERT INTO chunk_segments (segment, state) VALUES (g + 1, 'growing');
  RETURN g;
END $$;
