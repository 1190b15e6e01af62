-- LlamaParse webhook mode: the parse job submitted for each document, so a redelivered
-- `uploaded` event waits for the same job instead of submitting the PDF again, and the outcome
-- the webhook (POST /api/v2/webhooks/llamaparse) reported. The webhook route NOTIFYs channel
-- `llamaparse_jobs` with the job id; the parser LISTENs.
CREATE TABLE upload_pipeline.llamaparse_jobs (
  document_id       uuid PRIMARY KEY
                      REFERENCES upload_pipeline.documents (document_id) ON DELETE CASCADE,
  llamaparse_job_id text NOT NULL UNIQUE,
  status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'success', 'error')),
  error             text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
