"""The operator CLI: every command has --help; JSON output parses; exit codes mean something."""

from __future__ import annotations

import json
import subprocess
import sys

import jwt
import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from accessa.cli.main import app
from accessa.config import Settings

runner = CliRunner()


def _commands(group: typer.Typer) -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(cmd, prefix: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*prefix, name])
        else:
            paths.append(prefix)

    walk(get_command(group), [])
    return paths


@pytest.mark.parametrize("path", _commands(app), ids=lambda p: " ".join(p))
def test_every_command_has_help_and_a_json_option(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    if path not in (["run"],):
        assert "--json" in result.output, f"{' '.join(path)} has no --json"


def test_token_mints_a_jwt_the_api_accepts() -> None:
    user = "5f0c1f38-2d0e-4d67-9a59-4b0a3e0f2c11"
    result = runner.invoke(app, ["token", "--user", user, "--json"])
    assert result.exit_code == 0
    token = json.loads(result.output)["token"]
    settings = Settings()
    claims = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=settings.jwt_audience,
    )
    assert claims["sub"] == user and claims["role"] == "authenticated"


def test_a_bad_user_id_is_a_usage_error() -> None:
    assert runner.invoke(app, ["token", "--user", "not-a-uuid"]).exit_code == 2


NEVER_EMBED = [
    "accessa.cli.main",
    "consumers.parser.app",
    "consumers.chunker.app",
    "consumers.finalizer.app",
]


@pytest.mark.parametrize("module", NEVER_EMBED)
def test_the_cli_and_the_stages_that_never_embed_start_without_the_openai_sdk(module: str) -> None:
    # The SDK's types take most of a second to import: `accessa --help` and every parser,
    # chunker and finalizer pod would pay it at each start.
    code = f"import sys, {module}; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
