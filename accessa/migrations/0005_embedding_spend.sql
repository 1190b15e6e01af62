-- Daily embedding spend per user, plus the all-users total under the nil uuid: what the
-- embedder checks against ACCESSA_BUDGET_USER_DAILY_USD / ACCESSA_BUDGET_GLOBAL_DAILY_USD.
CREATE TABLE upload_pipeline.embedding_spend (
  day     date NOT NULL,
  user_id uuid NOT NULL,
  usd     numeric(14, 8) NOT NULL DEFAULT 0,
  tokens  bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (day, user_id)
);
