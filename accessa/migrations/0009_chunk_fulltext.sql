-- Hybrid search (GET /api/v2/search?mode=hybrid): full-text ranking beside pgvector, fused by
-- reciprocal rank (accessa/search.py). The 'english' configuration stems the words of a
-- question ("waiting" finds "wait") and drops stop words, and keeps the exact terms insurance
-- asks about as lexemes of their own: "POL-123456" is 'pol' + '-123456', "$2,500" is '2' +
-- '500', "1-800-555-0199" is '1' '-800' '-555' '-0199', "4.2" stays '4.2'. 'simple' would keep
-- stop words ("what", "is") as query terms, which only add noise to a policyholder's question.
SET search_path = upload_pipeline, public;

ALTER TABLE document_chunks
  ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED;
CREATE INDEX document_chunks_content_tsv ON document_chunks USING gin (content_tsv);
