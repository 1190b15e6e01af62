"""Generates infra/grafana/accessa-pipeline.json (run from the repo root after editing panels)."""
# ruff: noqa: E501 - PromQL reads best on one line

import json

panels = [
    (
        "Processed / s by stage",
        'sum by (stage) (rate(accessa_stage_messages_total{outcome="processed"}[1m]))',
        "ops",
    ),
    (
        "Retried and dead-lettered / s",
        'sum by (stage, outcome) (rate(accessa_stage_messages_total{outcome=~"retried|dead_lettered"}[5m]))',
        "ops",
    ),
    (
        "Failures by error code",
        "sum by (stage, error_class, code) (rate(accessa_stage_failures_total[5m]))",
        "ops",
    ),
    (
        "Processing time p95",
        "histogram_quantile(0.95, sum by (stage, le) (rate(accessa_stage_processing_seconds_bucket[5m])))",
        "s",
    ),
    ("In flight", "sum by (stage) (accessa_stage_in_flight)", "short"),
    ("Consumer lag", "sum by (stage) (accessa_consumer_lag)", "short"),
    (
        "Consumer lag by partition",
        "max by (stage, topic, partition) (accessa_consumer_lag)",
        "short",
    ),
    ("DLQ depth", "max by (topic) (accessa_dlq_depth)", "short"),
    ("API requests / s", "sum by (route, status) (rate(accessa_api_requests_total[5m]))", "reqps"),
    (
        "API latency p95",
        "histogram_quantile(0.95, sum by (route, le) (rate(accessa_api_request_seconds_bucket[5m])))",
        "s",
    ),
    ("Embedding tokens / s", "sum by (model) (rate(accessa_embedding_tokens_total[5m]))", "short"),
    (
        "Embedding spend (24 h)",
        "sum by (model) (increase(accessa_embedding_cost_usd_total[24h]))",
        "currencyUSD",
    ),
    (
        "Upload → complete p95",
        "histogram_quantile(0.95, sum by (le) (rate(accessa_job_duration_seconds_bucket[15m])))",
        "s",
    ),
    ("Outbox published / s", "sum(rate(accessa_outbox_published_total[5m]))", "ops"),
    ("Outbox publish failures", "sum(rate(accessa_outbox_failures_total[5m]))", "ops"),
    (
        "Outbox rows undeliverable (failed on their own)",
        "sum(increase(accessa_outbox_undeliverable_total[1h]))",
        "short",
    ),
    ("Abandoned uploads expired", "sum(increase(accessa_uploads_expired_total[1h]))", "short"),
    (
        "Waiting on the database or broker (in-place retries)",
        "max by (stage) (accessa_infra_retry_seconds)",
        "s",
    ),
    ("Jobs completed / min", "sum(rate(accessa_job_duration_seconds_count[5m])) * 60", "short"),
    (
        "Parsed documents by quality flag / h",
        "sum by (flag) (increase(accessa_documents_quality_flag_total[1h]))",
        "short",
    ),
    ("Oldest unpublished outbox row", "max(accessa_outbox_oldest_seconds)", "s"),
    ("Processes not ready", "sum by (process) (1 - accessa_ready)", "short"),
    ("Growing chunk segment rows (exact search)", "max(accessa_segment_growing_rows)", "short"),
    ("Chunk segments by state", "max by (state) (accessa_segments)", "short"),
    (
        "Segment seal p95 (bulk HNSW build)",
        "histogram_quantile(0.95, sum by (le) (rate(accessa_segment_seal_seconds_bucket[1h])))",
        "s",
    ),
]
dash = {
    "title": "Accessa Ingest pipeline",
    "uid": "accessa-pipeline",
    "schemaVersion": 39,
    "time": {"from": "now-1h", "to": "now"},
    "refresh": "30s",
    "tags": ["accessa", "kafka"],
    "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
    "panels": [
        {
            "id": i + 1,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": "__auto"}],
        }
        for i, (title, expr, unit) in enumerate(panels)
    ],
}
with open("infra/grafana/accessa-pipeline.json", "w") as f:
    json.dump(dash, f, indent=2)
    f.write("\n")
