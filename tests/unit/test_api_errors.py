"""Every error has one body, `{"error": {"code", "message", "correlation_id"}}`, whatever its
status: checked on the app without its lifespan (no database needed for these)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from accessa.auth import mint_token
from accessa.config import Settings
from producer_api.main import create_app

SETTINGS = Settings(rate_limits_enabled=False, max_upload_mb=1.0)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_app(SETTINGS, with_relay=False)
    app.state.pool = app.state.storage = None  # no lifespan: these never reach them

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    return TestClient(app, raise_server_exceptions=False)


def _token() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SETTINGS, uuid.uuid4())}"}


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "correlation_id"}
    assert error["code"] == code and error["message"]
    assert error["correlation_id"] == response.headers["x-correlation-id"]
    return error


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    _assert_error(client.get("/api/v2/nowhere"), 404, "not_found")


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    response = client.delete("/api/v2/jobs", headers=_token())
    _assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


def test_invalid_body_is_422_in_the_error_shape(client: TestClient) -> None:
    body = {"filename": "a.pdf", "bytes": -1, "sha256": "nope"}
    error = _assert_error(
        client.post("/api/v2/upload", json=body, headers=_token()), 422, "validation_error"
    )
    assert "bytes" in error["message"] and "sha256" in error["message"]


def test_malformed_json_is_422_in_the_error_shape(client: TestClient) -> None:
    response = client.post(
        "/api/v2/upload",
        content=b"{not json",
        headers={**_token(), "content-type": "application/json"},
    )
    _assert_error(response, 422, "validation_error")


def test_unhandled_exception_is_500_in_the_error_shape_with_the_callers_id(
    client: TestClient,
) -> None:
    response = client.get("/boom", headers={"X-Correlation-ID": "trace-500"})
    error = _assert_error(response, 500, "internal_error")
    assert error["correlation_id"] == "trace-500"
    assert "kaboom" not in response.text


def test_missing_token_is_401_with_www_authenticate(client: TestClient) -> None:
    response = client.get(f"/api/v2/jobs/{uuid.uuid4()}")
    _assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def test_oversized_body_is_413_before_it_is_read(client: TestClient) -> None:
    big = b"%PDF-" + b"0" * (2 * 1024 * 1024)
    response = client.post("/api/v2/documents", files={"file": ("a.pdf", big)}, headers=_token())
    _assert_error(response, 413, "file_too_large")


def test_declared_size_over_the_limit_is_413(client: TestClient) -> None:
    body = {"filename": "a.pdf", "bytes": 2 * 1024 * 1024, "sha256": "a" * 64}
    _assert_error(client.post("/api/v2/upload", json=body, headers=_token()), 413, "file_too_large")


def test_declared_mime_other_than_pdf_is_415(client: TestClient) -> None:
    body = {"filename": "a.png", "bytes": 10, "sha256": "a" * 64, "mime": "image/png"}
    _assert_error(
        client.post("/api/v2/upload", json=body, headers=_token()), 415, "unsupported_media_type"
    )


def test_invalid_correlation_id_is_replaced_and_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Correlation-ID": "bad id with spaces"})
    assert response.status_code == 200
    uuid.UUID(response.headers["x-correlation-id"])


def test_openapi_documents_every_versioned_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/v2/upload",
        "/api/v2/documents",
        "/api/v2/jobs",
        "/api/v2/jobs/{job_id}",
        "/api/v2/jobs/{job_id}/retry",
        "/health",
        "/ready",
    } <= set(paths)
    assert client.get("/docs").status_code == 200
