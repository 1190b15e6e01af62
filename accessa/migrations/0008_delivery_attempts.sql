-- Crash-proof delivery counting (accessa/runtime/deliveries.py). A row exists while a record
-- is delivered but not yet finished: a record that kills its process (OOM kill, segfault,
-- SIGKILL) keeps its row across restarts, so its handler starts can be counted and the
-- record dead-lettered (`crashed_consumer`) instead of redelivered forever.
SET search_path = upload_pipeline, public;

-- UNLOGGED: no WAL, so no fsync per polled batch (10 ms -> 2 ms for 2 statements here). The
-- counts must survive the consumer's death, not Postgres's: a Postgres crash or a failover
-- empties the table, and a poison pill gets its attempts again.
CREATE UNLOGGED TABLE delivery_attempts (
  consumer_group text NOT NULL,
  topic          text NOT NULL,
  partition      int NOT NULL,
  "offset"       bigint NOT NULL,
  attempts       int NOT NULL DEFAULT 1,  -- handler starts that did not finish
  deliveries     int NOT NULL DEFAULT 1,  -- polls that returned the record
  first_at       timestamptz NOT NULL DEFAULT now(),
  last_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, partition, "offset")
);
