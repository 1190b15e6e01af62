"""The request guard's route table: which credentials and body cap each route gets."""

from __future__ import annotations

import time

import pytest

from accessa.config import Settings
from accessa.providers.llamaparse import webhook_headers_plausible
from producer_api.core.guard import RequestGuard
from producer_api.main import create_app

SETTINGS = Settings(max_upload_mb=2.0, api_max_json_kb=8, api_max_webhook_kb=16)


def _policy(method: str, path: str) -> tuple[str, int]:
    app = create_app(SETTINGS, with_relay=False)
    guard = RequestGuard(app, settings=SETTINGS)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "app": app,
    }
    policy, _ = guard._policy(scope)
    return policy.auth, policy.max_bytes


@pytest.mark.parametrize(
    ("method", "path", "auth", "cap"),
    [
        ("POST", "/api/v2/documents", "bearer", 2 * 1024 * 1024 + 64 * 1024),
        ("PUT", "/api/v2/upload/0b3f/content", "signed_url", 2 * 1024 * 1024),
        ("POST", "/api/v2/webhooks/llamaparse", "webhook", 16 * 1024),
        ("POST", "/api/v2/upload", "bearer", 8 * 1024),
        ("POST", "/api/v2/upload/0b3f/complete", "bearer", 8 * 1024),
        ("GET", "/api/v2/jobs/0b3f/events", "bearer", 8 * 1024),
        ("GET", "/health", "none", 8 * 1024),
        ("GET", "/api/v2/nowhere", "none", 8 * 1024),  # 404 stays 404
        ("DELETE", "/api/v2/jobs", "none", 8 * 1024),  # 405 stays 405
    ],
)
def test_each_route_gets_its_credentials_and_cap(
    method: str, path: str, auth: str, cap: int
) -> None:
    assert _policy(method, path) == (auth, cap)


def test_every_versioned_route_needs_credentials() -> None:
    """A new /api/v2 route is guarded by default: no route slips through as `none`."""
    app = create_app(SETTINGS, with_relay=False)
    paths = [
        (m, p) for p, ops in app.openapi()["paths"].items() if p.startswith("/api/v2/") for m in ops
    ]
    assert len(paths) >= 10
    for method, path in paths:
        auth, _ = _policy(method.upper(), path.replace("{", "").replace("}", ""))
        assert auth != "none", (method, path)


@pytest.mark.parametrize(
    ("timestamp", "signature", "plausible"),
    [
        ("NOW", "sha256=" + "a" * 64, True),
        ("NOW", "sha256=" + "A" * 64, False),
        ("NOW", "sha256=" + "a" * 63, False),
        ("NOW", "", False),
        ("OLD", "sha256=" + "a" * 64, False),
        ("soon", "sha256=" + "a" * 64, False),
    ],
)
def test_webhook_headers_are_judged_before_the_body(
    timestamp: str, signature: str, plausible: bool
) -> None:
    now = time.time()
    ts = {"NOW": str(int(now)), "OLD": str(int(now) - 301)}.get(timestamp, timestamp)
    assert webhook_headers_plausible(ts, signature, now=now) is plausible
