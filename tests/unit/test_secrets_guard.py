"""ACCESSA_ENV=production: each process refuses the local defaults and `change-me` placeholders
of the secrets it uses (Settings.secrets_used), a JWT secret under 32 bytes where it signs or
verifies, and `change-me` in any non-secret setting; one error naming every offending env var,
never a value. Secrets a process does not use need not be set at all."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from accessa.auth import mint_token
from accessa.config import PROCESSES, Settings
from accessa.errors import ConfigurationError
from accessa.runtime.server import run_stage
from consumers.parser.app import stage as parser_stage
from producer_api.main import create_app

STRONG = "s3cr3t-" + "k" * 40  # a real-looking value of any secret
ALL_BACKENDS = {"storage_backend": "s3", "parser_backend": "llamaparse", "embed_provider": "openai"}


def _production(**settings: Any) -> Settings:
    return Settings(_env_file=None, env="production", **settings)


def _refused(process: str, **settings: object) -> str:
    with pytest.raises(ConfigurationError) as err:
        _production(**settings).require_production_ready(process)
    assert err.value.code == "production_secrets"
    return err.value.message


def test_parser_starts_in_production_without_a_jwt_secret() -> None:
    settings = _production(
        **ALL_BACKENDS,
        llamaparse_api_key="llx-" + STRONG,
        s3_access_key_id="AKIA" + "Q" * 16,
        s3_secret_access_key=STRONG,
    )
    assert settings.jwt_secret.get_secret_value() == Settings().jwt_secret.get_secret_value()
    assert settings.production_problems("parser") == []
    settings.require_production_ready("parser")
    assert "ACCESSA_JWT_SECRET" in settings.production_problems("api")  # the API would not


def test_api_with_the_default_jwt_secret_is_refused() -> None:
    assert "ACCESSA_JWT_SECRET" in _refused("api", embed_provider="local")
    assert "ACCESSA_JWT_SECRET" in _refused("token", embed_provider="local")


def test_a_short_jwt_secret_is_refused_where_used_without_echoing_it() -> None:
    message = _refused("api", jwt_secret="x", embed_provider="local")
    assert "ACCESSA_JWT_SECRET" in message
    assert "'x'" not in message and "input_value" not in message
    assert _production(jwt_secret="x", embed_provider="local").production_problems("chunker") == []


def test_embedder_default_openai_key_refused_with_openai_accepted_with_local() -> None:
    assert _refused("embedder", embed_provider="openai").endswith("ACCESSA_OPENAI_API_KEY")
    _production(embed_provider="local").require_production_ready("embedder")
    _production(embed_provider="openai", openai_api_key="sk-" + STRONG).require_production_ready(
        "embedder"
    )


def test_each_process_names_only_the_default_secrets_it_uses() -> None:
    settings = _production(jwt_secret="short", **ALL_BACKENDS)
    s3 = ["ACCESSA_S3_ACCESS_KEY_ID", "ACCESSA_S3_SECRET_ACCESS_KEY"]
    want = {
        "api": {
            "ACCESSA_JWT_SECRET",
            "ACCESSA_LLAMAPARSE_WEBHOOK_SECRET",
            "ACCESSA_OPENAI_API_KEY",
            *s3,
        },
        "parser": {"ACCESSA_LLAMAPARSE_API_KEY", *s3},
        "chunker": set(s3),
        "embedder": {"ACCESSA_OPENAI_API_KEY"},
        "finalizer": set(),
        "relay": set(),
        "ops": set(),
        "storage-gc": set(s3),
        "token": {"ACCESSA_JWT_SECRET"},
        "console": set(),  # as ops: no JWT secret, no S3 or provider key
        "compactor": set(),  # Postgres only
    }
    assert set(want) == set(PROCESSES) - {"mocks"}
    for process, names in want.items():
        assert set(settings.production_problems(process)) == names, process
    message = _refused("api", jwt_secret="short", **ALL_BACKENDS)
    for default in ("sk-mock", "llx-mock", "whsec-local", "short", "'test'"):
        assert default not in message


def test_every_process_accepts_real_values_for_every_backend() -> None:
    settings = _production(
        jwt_secret=STRONG,
        **ALL_BACKENDS,
        s3_access_key_id="AKIA" + "Q" * 16,
        s3_secret_access_key=STRONG,
        llamaparse_api_key="llx-" + STRONG,
        llamaparse_webhook_secret="whsec-" + STRONG,
        openai_api_key="sk-" + STRONG,
    )
    for process in PROCESSES:
        settings.require_production_ready(process)


@pytest.mark.parametrize("process", PROCESSES)
def test_change_me_in_the_database_url_is_refused_in_every_process(process: str) -> None:
    url = "postgresql://accessa:change-me@postgres:5432/accessa"
    message = _refused(process, jwt_secret=STRONG, embed_provider="local", database_url=url)
    assert "ACCESSA_DATABASE_URL" in message and process in message
    assert url not in message and "change-me" not in message


@pytest.mark.parametrize(
    ("process", "setting", "value"),
    [
        ("api", "jwt_secret", "change-me-to-a-long-random-string-0123456789"),
        ("embedder", "openai_api_key", "sk-change-me"),
        ("chunker", "s3_access_key_id", "change-me"),
        ("finalizer", "kafka_sasl_password", "CHANGE-ME"),
    ],
)
def test_change_me_in_a_used_secret_is_refused(process: str, setting: str, value: str) -> None:
    storage = "s3" if setting.startswith("s3_") else "local"
    base = {
        "jwt_secret": STRONG,
        "openai_api_key": "sk-" + STRONG,
        "storage_backend": storage,
        "s3_access_key_id": "AKIA" + "Q" * 16,
        "s3_secret_access_key": STRONG,
    }
    message = _refused(process, **{**base, setting: value})
    assert message.endswith(f"ACCESSA_{setting.upper()}")
    assert value not in message


def test_the_console_app_refuses_placeholders_but_needs_no_jwt_secret() -> None:
    from producer_api.console.app import create_console_app

    url = "postgresql://accessa_ops:change-me@postgres:5432/accessa"
    with pytest.raises(ConfigurationError, match="ACCESSA_DATABASE_URL"):
        create_console_app(_production(database_url=url))
    real = "postgresql://accessa_ops:" + STRONG + "@postgres:5432/accessa"
    create_console_app(_production(database_url=real, **ALL_BACKENDS))  # default JWT secret


def test_a_placeholder_of_a_secret_the_process_does_not_use_is_not_its_concern() -> None:
    settings = _production(jwt_secret="change-me", openai_api_key="sk-change-me")
    assert settings.production_problems("finalizer") == []
    assert settings.production_problems("embedder") == ["ACCESSA_OPENAI_API_KEY"]


def test_local_and_test_envs_keep_the_embedded_defaults() -> None:
    for env in ("local", "test"):
        settings = Settings(_env_file=None, env=env)
        assert settings.production_problems("api") != []  # present, allowed
        settings.require_production_ready("api")


def test_an_unknown_process_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown process 'nope'"):
        _production().production_problems("nope")


def test_stage_runtime_api_app_and_token_minting_refuse_before_starting() -> None:
    """The entry points below the CLI: a stage started any way, an API app built any way."""
    settings = _production(embed_provider="openai", parser_backend="llamaparse")
    with pytest.raises(ConfigurationError, match="ACCESSA_LLAMAPARSE_API_KEY"):
        run_stage(parser_stage, settings)
    with pytest.raises(ConfigurationError, match=r"^api: .*ACCESSA_JWT_SECRET"):
        create_app(settings)
    with pytest.raises(ConfigurationError, match=r"^token: .*ACCESSA_JWT_SECRET"):
        mint_token(settings, uuid.uuid4())


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACCESSA_")}
    clean.update(ACCESSA_ENV="production", ACCESSA_HOME=os.environ.get("TMPDIR", "/tmp"), **env)
    return subprocess.run(
        [sys.executable, "-m", "accessa.cli.main", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_exit_3(result: subprocess.CompletedProcess[str], *names: str) -> None:
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for name in names:
        assert name in result.stderr


def test_cli_token_with_a_short_jwt_secret_says_which_in_one_line_exit_3() -> None:
    result = _cli("token", "--user", str(uuid.uuid4()), ACCESSA_JWT_SECRET="tiny-secret-value")
    _one_line_exit_3(result, "ACCESSA_JWT_SECRET")
    assert "tiny-secret-value" not in result.stderr and not result.stdout


def test_cli_operator_command_refuses_change_me_but_not_secrets_it_does_not_use() -> None:
    url = "postgresql://u:change-me@db:5432/accessa"
    result = _cli("config", "--json", ACCESSA_DATABASE_URL=url)
    assert result.returncode == 3 and "ACCESSA_DATABASE_URL" in result.stdout
    assert "change-me" not in result.stdout + result.stderr
    # `config` signs nothing and calls no OpenAI: their placeholders are not its concern.
    result = _cli(
        "config", "--json", ACCESSA_JWT_SECRET="tiny", ACCESSA_OPENAI_API_KEY="sk-change-me"
    )
    assert result.returncode == 0, result.stderr


def test_cli_run_refuses_the_process_before_it_starts() -> None:
    result = _cli("run", "parser", ACCESSA_PARSER_BACKEND="llamaparse")
    _one_line_exit_3(result, "parser:", "ACCESSA_LLAMAPARSE_API_KEY")
    _one_line_exit_3(
        _cli("run", "api", ACCESSA_EMBED_PROVIDER="local"), "api:", "ACCESSA_JWT_SECRET"
    )
