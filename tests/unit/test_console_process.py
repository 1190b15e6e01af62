"""The console's own process, without a database: `accessa run all` starts it, and its app
caps bodies before any route (or Postgres) is reached. Over real Postgres and Kafka:
tests/integration/test_console_http.py; as a process: tests/e2e/test_postgres_logins.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from accessa.cli import run as run_cmd
from accessa.cli.main import app as cli
from accessa.config import Settings
from producer_api.console.app import MAX_BODY_BYTES, create_console_app

pytestmark = pytest.mark.usefixtures("without_runner_settings")


def test_run_all_starts_the_console_beside_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []

    def run_children(names: list[str], env: dict[str, str]) -> int:
        started.append(names)
        return 0

    monkeypatch.setattr(run_cmd, "run_children", run_children)
    result = CliRunner().invoke(cli, ["run", "all", "--no-with-mocks"])
    assert result.exit_code == 0, result.output
    assert started == [
        ["api", "parser", "chunker", "embedder", "finalizer", "console", "compactor"]
    ]


def test_the_console_has_its_own_port_and_url() -> None:
    settings = Settings(_env_file=None)
    assert (settings.console_port, settings.console_url) == (8010, "http://127.0.0.1:8010")
    assert settings.console_port != settings.api_port


def test_a_body_over_16_kb_is_refused_before_the_route() -> None:
    client = TestClient(create_console_app(Settings(_env_file=None)))  # no lifespan: no pool
    big = client.post(
        "/console/dlq/redrive",
        content=b"id=" + b"x" * MAX_BODY_BYTES,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "file_too_large"
    assert big.headers["connection"] == "close"
    small = client.post("/console/dlq/redrive", data={"id": "x:0:0"})
    assert small.status_code == 401 and "Not signed in" in small.text  # the route's own answer
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
