"""API request metrics on the shared registry, served at /metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from accessa.config import Settings
from producer_api.main import create_app
from producer_api.metrics import REQUESTS


def test_requests_are_counted_by_route_template_and_served_at_metrics() -> None:
    app = create_app(Settings(rate_limits_enabled=False), with_relay=False)
    app.state.pool = app.state.storage = None  # no lifespan: these requests never use them
    client = TestClient(app)
    before = REQUESTS.labels("GET", "/health", "200")._value.get()
    client.get("/health")
    client.get("/api/v2/jobs/not-a-uuid-at-all")  # 401: counted under its template
    client.get("/nowhere/at/all")
    assert REQUESTS.labels("GET", "/health", "200")._value.get() == before + 1
    text = client.get("/metrics").text
    assert (
        'accessa_api_requests_total{method="GET",route="/api/v2/jobs/{job_id}",status="401"}'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert "accessa_api_request_seconds_bucket" in text
    assert "accessa_outbox_published_total" in text
