-- Search over segments, refined (accessa/search.py): the caller's chunks per segment, counted
-- up to `cap` (the whole caller's "few enough to sort all" bound), with whether the segment is
-- sealed; search decides per segment (index above accessa.search.SEGMENT_EXACT_UP_TO). 0023's
-- user_segments decided with the whole bound per segment, so a caller spread over segments
-- sorted up to that many chunks in each. SECURITY DEFINER, so it applies the caller's RLS
-- scope itself: the user's chunks, or every chunk when no user is set.
DROP FUNCTION IF EXISTS upload_pipeline.user_segments(integer);

CREATE FUNCTION upload_pipeline.user_segment_rows(cap integer)
RETURNS TABLE (segment bigint, sealed boolean, rows bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = upload_pipeline, public
AS $$
BEGIN
  IF current_user_id() IS NULL THEN
    RETURN QUERY
      SELECT s.segment, s.state = 'sealed', n.rows
      FROM chunk_segments s CROSS JOIN LATERAL (
        SELECT count(*) AS rows FROM (
          SELECT FROM document_chunks c WHERE c.segment = s.segment LIMIT cap + 1) x) n
      WHERE n.rows > 0 ORDER BY s.segment;
  ELSE
    RETURN QUERY
      SELECT s.segment, s.state = 'sealed', n.rows
      FROM chunk_segments s CROSS JOIN LATERAL (
        SELECT count(*) AS rows FROM (
          SELECT FROM document_chunks c
          WHERE c.segment = s.segment AND c.user_id = current_user_id()
          LIMIT cap + 1) x) n
      WHERE n.rows > 0 ORDER BY s.segment;
  END IF;
END $$;
