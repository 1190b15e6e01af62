"""ACCESSA_ENV=production refuses local defaults and placeholder secrets where they are used,
and JWT secrets under 32 bytes: one error naming every offending env var, never a value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from accessa.config import Settings

STRONG = "s3cr3t-" + "k" * 40  # a real-looking value of any secret


def _production(**settings: object) -> Settings:
    return Settings(_env_file=None, env="production", **settings)


def _refused(**settings: object) -> str:
    with pytest.raises(ValidationError) as err:
        _production(**settings)
    return str(err.value)


def test_production_refuses_a_short_jwt_secret_without_echoing_it() -> None:
    message = _refused(jwt_secret="x", embed_provider="local")
    assert "ACCESSA_JWT_SECRET" in message
    assert "'x'" not in message and "input_value" not in message


def test_production_refuses_the_local_default_jwt_secret() -> None:
    assert "ACCESSA_JWT_SECRET" in _refused(embed_provider="local")


def test_production_names_every_default_key_its_backends_would_use_in_one_error() -> None:
    message = _refused(
        jwt_secret="short", storage_backend="s3", parser_backend="llamaparse",
        embed_provider="openai",
    )  # fmt: skip
    for env in ("ACCESSA_JWT_SECRET", "ACCESSA_S3_ACCESS_KEY_ID", "ACCESSA_S3_SECRET_ACCESS_KEY",
                "ACCESSA_LLAMAPARSE_API_KEY", "ACCESSA_LLAMAPARSE_WEBHOOK_SECRET",
                "ACCESSA_OPENAI_API_KEY"):  # fmt: skip
        assert env in message
    for default in ("sk-mock", "llx-mock", "whsec-local", "short"):
        assert default not in message


def test_production_accepts_defaults_no_backend_uses() -> None:
    settings = _production(jwt_secret=STRONG, embed_provider="local")
    assert settings.storage_backend == "local" and settings.parser_backend == "local"


def test_production_accepts_real_values_for_every_backend() -> None:
    _production(
        jwt_secret=STRONG, storage_backend="s3", parser_backend="llamaparse",
        embed_provider="openai", s3_access_key_id="AKIA" + "Q" * 16,
        s3_secret_access_key=STRONG, llamaparse_api_key="llx-" + STRONG,
        llamaparse_webhook_secret="whsec-" + STRONG, openai_api_key="sk-" + STRONG,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("jwt_secret", "change-me-to-a-long-random-string-0123456789"),
        ("openai_api_key", "sk-change-me"),
        ("s3_access_key_id", "change-me"),  # placeholder even where S3 is not the backend
        ("database_url", "postgresql://accessa:change-me@postgres:5432/accessa"),
        ("kafka_sasl_password", "CHANGE-ME"),
    ],
)
def test_production_refuses_change_me_in_any_setting(setting: str, value: str) -> None:
    base = {"jwt_secret": STRONG, "openai_api_key": "sk-" + STRONG}
    message = _refused(**{**base, setting: value})
    assert f"ACCESSA_{setting.upper()}" in message
    assert value not in message


def test_local_and_test_envs_keep_the_embedded_defaults() -> None:
    for env in ("local", "test"):
        assert Settings(_env_file=None, env=env).placeholder_secrets() != []  # present, allowed


def test_cli_in_production_with_placeholders_says_which_in_one_line_exit_3() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCESSA_")}
    env.update(ACCESSA_ENV="production", ACCESSA_JWT_SECRET="tiny-secret-value",
               ACCESSA_OPENAI_API_KEY="sk-change-me")  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "accessa.cli.main", "config"],
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "ACCESSA_JWT_SECRET" in result.stderr and "ACCESSA_OPENAI_API_KEY" in result.stderr
    assert "tiny-secret-value" not in result.stderr and "sk-change-me" not in result.stderr
