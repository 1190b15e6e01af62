-- Operator tools: a DLQ record is redriven at most once, whoever runs `accessa dlq redrive`.
CREATE TABLE upload_pipeline.dlq_redrives (
  dlq_id      text PRIMARY KEY,  -- "<topic>:<partition>:<offset>"
  document_id uuid,
  job_id      uuid,
  target      text NOT NULL,
  redriven_at timestamptz NOT NULL DEFAULT now()
);
