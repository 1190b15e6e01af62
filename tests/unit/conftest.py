"""Unit-test fixtures (no services)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def without_runner_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ACCESSA_* variable of the shell running the tests: a manifest's settings are its own
    environment over the defaults, as in its container or pod."""
    for name in [n for n in os.environ if n.startswith("ACCESSA_")]:
        monkeypatch.delenv(name)
