"""Every command family keeps the README's promise when a component is down: exit 3 and one
readable line, in seconds, never a traceback or a hang (nothing listens on the ports used)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import CORPUS

USER = "00000000-0000-0000-0000-000000000001"
PDF = str(next(CORPUS.glob("*.pdf")))
API = ("the API at http://127.0.0.1:9 is not reachable", "is `make run` up?")
KAFKA = ("Kafka at 127.0.0.1:9: Kafka broker not reachable",)
POSTGRES = ("postgres: cannot connect",)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["jobs", "--user", USER], API),
        (["search", "deductible", "--user", USER], API),
        (["upload", PDF, "--user", USER], API),
        (["dlq", "list"], KAFKA),
        (["replay", "--topic", "uploaded", "--from", "2026-01-01T00:00:00", "--dry-run"], KAFKA),
        (["consumers", "reset", "--group", "parser", "--to-earliest", "--dry-run"], KAFKA),
        (["status"], POSTGRES),
        (["reprocess", "status"], POSTGRES),
        (["cost"], POSTGRES),
    ],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else None,
)
def test_a_command_against_down_infrastructure_exits_3_with_one_line(
    command: list[str], expected: tuple[str, ...], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "ACCESSA_HOME": str(tmp_path),
        "ACCESSA_API_URL": "http://127.0.0.1:9",
        "ACCESSA_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "ACCESSA_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/accessa",
    }
    result = subprocess.run(
        [sys.executable, "-m", "accessa.cli.main", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert all(part in result.stderr for part in expected), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
