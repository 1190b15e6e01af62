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
DO $$
DECLARE part regclass;
BEGIN
  FOR part IN SELECT inhrelid::regclass FROM pg_inherits
              WHERE inhparent = 'upload_pipeline.document_chunks'::regclass LOOP
    EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 8160)', part);
  END LOOP;
END $$;

-- Each new growing segment takes the parent's storage and the same target (LIKE copies the
-- storage only when asked; storage parameters are per table).
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
  EXECUTE format('ALTER TABLE document_chunks ATTACH PARTITION %I FOR VALUES IN (%s)', part, g + 1);
  UPDATE chunk_segments SET state = 'sealing', sealing_at = now() WHERE segment = g;
  INSERT INTO chunk_segments (segment, state) VALUES (g + 1, 'growing');
  RETURN g;
END $$;
