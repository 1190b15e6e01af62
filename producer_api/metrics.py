"""API and outbox metrics on the shared registry (`accessa.runtime.metrics.REGISTRY`)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessa.runtime.metrics import REGISTRY

REQUESTS = Counter(
    "accessa_api_requests_total",
    "API requests by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "accessa_api_request_seconds",
    "API request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
OUTBOX_PUBLISHED = Counter(
    "accessa_outbox_published_total", "Outbox rows published to Kafka.", registry=REGISTRY
)
UPLOADS_EXPIRED = Counter(
    "accessa_uploads_expired_total",
    "Declared two-step uploads whose bytes never came, expired by housekeeping.",
    registry=REGISTRY,
)
OUTBOX_UNDELIVERABLE = Counter(
    "accessa_outbox_undeliverable_total",
    "Outbox rows marked failed: the broker will never take them (missing or forbidden topic, "
    "record too large).",
    registry=REGISTRY,
)
OUTBOX_FAILURES = Counter(
    "accessa_outbox_failures_total",
    "Relay rounds that failed (broker or database unavailable).",
    registry=REGISTRY,
)
OUTBOX_OLDEST = Gauge(
    "accessa_outbox_oldest_seconds",
    "Age of the oldest unpublished outbox row this relay claimed in its last round (0 when it "
    "found none).",
    registry=REGISTRY,
)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (`/api/v2/jobs/{job_id}`), or `unmatched`.

    An included router's route knows only its own part of the path; the prefix is the
    request path's leading segments (route parameters never contain a slash here)."""
    route: str | None = getattr(scope.get("route"), "path", None)
    if route is None:
        return "unmatched"
    segments = scope["path"].rstrip("/").split("/")
    prefix = segments[: max(len(segments) - len(route.split("/")), 0) + 1]
    return "/".join(prefix).rstrip("/") + route


class MetricsMiddleware:
    """Counts and times every request under its route template (bounded label values)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = route_template(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            REQUEST_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - start)
