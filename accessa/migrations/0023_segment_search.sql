-- Search over segments (0022, accessa/search.py). Per segment holding the caller's chunks:
-- whether to read it through its HNSW index (sealed, and more than `exact_up_to` of them) or
-- to sort them exactly (the growing and sealing segments, and a sealed one with few: an
-- iterative index scan would walk most of that segment's graph to find them). Segments
-- without any are skipped. SECURITY DEFINER (the caller cannot read chunk_segments), so it
-- counts the rows the caller's RLS scope holds itself: the user's, or every row when no user
-- is set (the stages' and operators' scope). Two queries: each can use its index.
CREATE FUNCTION upload_pipeline.user_segments(exact_up_to integer)
RETURNS TABLE (segment bigint, rows bigint, indexed boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = upload_pipeline, public
AS $$
BEGIN
  IF current_user_id() IS NULL THEN
    RETURN QUERY
      SELECT s.segment, n.rows, s.state = 'sealed' AND n.rows > exact_up_to
      FROM chunk_segments s CROSS JOIN LATERAL (
        SELECT count(*) AS rows FROM (
          SELECT FROM document_chunks c WHERE c.segment = s.segment LIMIT exact_up_to + 1) x) n
      WHERE n.rows > 0 ORDER BY s.segment;
  ELSE
    RETURN QUERY
      SELECT s.segment, n.rows, s.state = 'sealed' AND n.rows > exact_up_to
      FROM chunk_segments s CROSS JOIN LATERAL (
        SELECT count(*) AS rows FROM (
          SELECT FROM document_chunks c
          WHERE c.segment = s.segment AND c.user_id = current_user_id()
          LIMIT exact_up_to + 1) x) n
      WHERE n.rows > 0 ORDER BY s.segment;
  END IF;
END $$;
