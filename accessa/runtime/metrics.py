"""Prometheus metrics of the stage runtime. Names are the contract of infra/grafana."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "accessa_stage_messages_total",
    "Records handled by a stage, by outcome (processed, duplicate, deleted: its document was "
    "deleted meanwhile, skipped; retried, dead_lettered).",
    ["stage", "outcome"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "accessa_stage_failures_total",
    "Handler failures by error class and code.",
    ["stage", "error_class", "code"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "accessa_stage_processing_seconds",
    "Time to handle one record (decode → work → commit → emit).",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "accessa_stage_in_flight", "Records being handled now.", ["stage"], registry=REGISTRY
)
INFRA_RETRY = Gauge(
    "accessa_infra_retry_seconds",
    "How long the oldest record retried in place has waited for the database or broker "
    "(0 when none is waiting).",
    ["stage"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "accessa_consumer_lag",
    "End offset minus the group's committed offset, per partition.",
    ["stage", "topic", "partition"],
    registry=REGISTRY,
)
DLQ_DEPTH = Gauge(
    "accessa_dlq_depth", "Records in a dead-letter topic.", ["topic"], registry=REGISTRY
)
EMBED_TOKENS = Counter(
    "accessa_embedding_tokens_total",
    "Tokens sent to the embedding provider.",
    ["model"],
    registry=REGISTRY,
)
EMBED_COST = Counter(
    "accessa_embedding_cost_usd_total", "Embedding spend in USD.", ["model"], registry=REGISTRY
)
JOB_DURATION = Histogram(
    "accessa_job_duration_seconds",
    "Upload to complete, per job.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
QUALITY_FLAGS = Counter(
    "accessa_documents_quality_flag_total",
    "Parsed documents by quality flag (low_ocr_confidence, little_text_on_image_page, "
    "no_text), counted once per document by the parser; `none` for a document without one.",
    ["flag"],
    registry=REGISTRY,
)
READY = Gauge(
    "accessa_ready",
    "1 when the process's last readiness check passed, 0 when it failed.",
    ["process"],
    registry=REGISTRY,
)
