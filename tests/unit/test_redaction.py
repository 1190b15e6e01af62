"""The password of a URL never reaches `accessa config` or a log line (messages, extras and
tracebacks of logged exceptions)."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from accessa.cli.main import app
from accessa.config import get_settings
from accessa.logs import redact, setup_logging

PASSWORD = "hunter2-Very-Secret"
DB_URL = f"postgresql://accessa:{PASSWORD}@db.internal:5432/accessa?sslmode=verify-full"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DB_URL, "postgresql://accessa:***@db.internal:5432/accessa?sslmode=verify-full"),
        ("GET https://bob:pw@example.com/x failed", "GET https://bob:***@example.com/x failed"),
        (
            "a postgres://u:p@h/d and redis://:p2@r:6379",
            "a postgres://u:***@h/d and redis://:***@r:6379",
        ),
        ("http://host:8080/path@v2 kept", "http://host:8080/path@v2 kept"),  # a port, no password
        (
            "postgresql://postgres@127.0.0.1:54329/accessa",
            "postgresql://postgres@127.0.0.1:54329/accessa",
        ),
    ],
)
def test_redact_hides_only_url_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_config_command_redacts_the_database_url_password(monkeypatch) -> None:
    monkeypatch.setenv("ACCESSA_DATABASE_URL", DB_URL)
    get_settings.cache_clear()
    try:
        as_json = CliRunner().invoke(app, ["config", "--json"])
        table = CliRunner().invoke(app, ["config"], env={"COLUMNS": "400"})
    finally:
        get_settings.cache_clear()
    assert as_json.exit_code == 0 and table.exit_code == 0
    assert PASSWORD not in as_json.output and PASSWORD not in table.output
    rows = {r["env"]: r["value"] for r in json.loads(as_json.output)}
    assert rows["ACCESSA_DATABASE_URL"] == redact(DB_URL)
    assert "accessa:***@db.internal" in table.output


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("as_json", [True, False])
def test_log_lines_redact_urls_in_messages_extras_and_logged_exceptions(
    capsys, restore_logging, as_json: bool
) -> None:
    setup_logging("api", "INFO", as_json=as_json)
    log = logging.getLogger("accessa.test")
    log.info("connecting to %s", DB_URL, extra={"target": f"https://svc:{PASSWORD}@s3.local/b"})
    try:
        raise ConnectionError(f"could not connect to {DB_URL}")
    except ConnectionError:
        log.exception("pool open failed")
    err = capsys.readouterr().err
    assert PASSWORD not in err
    assert "postgresql://accessa:***@db.internal" in err
    assert "pool open failed" in err and "ConnectionError" in err
    if as_json:
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert lines[0]["target"] == "https://svc:***@s3.local/b"
        assert "could not connect to postgresql://accessa:***@" in lines[1]["exc"]
