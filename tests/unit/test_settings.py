"""The one settings model: prefix, defaults, secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from accessa.cli.main import app
from accessa.config import Settings
from accessa.errors import ConfigurationError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_reads_its_accessa_prefixed_env_var(monkeypatch) -> None:
    monkeypatch.setenv("ACCESSA_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("ACCESSA_KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    settings = Settings()
    assert settings.topic_partitions == 12
    assert settings.bootstrap_servers == "broker:9092"
    assert not settings.embedded_kafka


def test_defaults_run_locally_with_nothing_set() -> None:
    settings = Settings(_env_file=None)
    assert settings.embedded_kafka and settings.embedded_postgres
    # The bootstrap superuser (with its password once the server has one), and per process a
    # login of its own (issue 19); any other process name is ops.
    dsn = urlsplit(settings.dsn)
    assert (dsn.username, dsn.hostname) == ("postgres", "127.0.0.1")
    for process in ("api", "parser", "ops", "migrator"):
        assert urlsplit(settings.dsn_for(process)).username == f"accessa_{process}"
    assert urlsplit(settings.dsn_for("relay")).username == "accessa_ops"


def test_production_refuses_the_local_jwt_secret_where_it_is_used() -> None:
    settings = Settings(env="production")  # loads: each process checks its own secrets
    with pytest.raises(ConfigurationError, match="ACCESSA_JWT_SECRET"):
        settings.require_production_ready("api")
    assert "ACCESSA_JWT_SECRET" not in settings.production_problems("parser")


@pytest.mark.parametrize(
    "secret",
    ["ACCESSA_OPENAI_API_KEY", "ACCESSA_KAFKA_SASL_PASSWORD", "ACCESSA_KAFKA_SSL_KEY_PASSWORD"],
)
def test_config_command_never_prints_secrets(monkeypatch, secret: str) -> None:
    monkeypatch.setenv(secret, "very-secret-value")
    from accessa.config import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert "very-secret-value" not in result.output
    rows = {r["env"]: r["value"] for r in json.loads(result.output)}
    assert rows[secret] == "***"


def test_readme_lists_every_setting() -> None:
    listed = set(re.findall(r"`(ACCESSA_[A-Z0-9_]+)`", README.read_text()))
    expected = {f"ACCESSA_{name.upper()}" for name in Settings.model_fields}
    assert expected - listed == set()


def test_webhook_mode_calls_the_api_route_back_unless_told_another_url() -> None:
    from accessa.config import LLAMAPARSE_WEBHOOK_PATH
    from producer_api.main import create_app

    assert Settings(_env_file=None).llamaparse_callback_url is None  # polling
    webhook = Settings(llamaparse_mode="webhook", api_url="http://api:8000/")
    assert webhook.llamaparse_callback_url == "http://api:8000" + LLAMAPARSE_WEBHOOK_PATH
    assert LLAMAPARSE_WEBHOOK_PATH in create_app(webhook).openapi()["paths"]
    told = Settings(llamaparse_mode="webhook", llamaparse_webhook_url="https://hooks.example/lp")
    assert told.llamaparse_callback_url == "https://hooks.example/lp"
