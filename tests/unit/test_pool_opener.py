"""`db.PoolOpener` without a server: the retry period backs off, one warning per try, and the
readiness reason is the last failure's line."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import pytest

from accessa import db
from accessa.config import Settings


def _refused() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] ...")
    exc.verify_message = "unable to get local issuer certificate"
    return exc


async def test_retries_back_off_from_1_s_doubling_to_60_s_with_one_warning_each(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tries, waits = [], []
    pool = object()

    async def create_pool(settings: Settings, process: str = "ops", **overrides: Any) -> object:
        tries.append(overrides)
        if len(tries) <= 9:
            raise _refused()
        return pool

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(db, "create_pool", create_pool)
    monkeypatch.setattr(asyncio, "sleep", sleep)
    opener = db.PoolOpener(Settings(), max_size=3)
    assert await opener.problem() == "not connected yet"
    with caplog.at_level(logging.WARNING, logger="accessa.db"):
        assert await opener.open() is pool
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert tries == [{"max_size": 3}] * 10
    warnings = [r.getMessage() for r in caplog.records if r.name == "accessa.db"]
    assert len(warnings) == 9
    assert warnings[0] == (
        "postgres: certificate verify failed (unable to get local issuer certificate)"
        " (next try in 1 s)"
    )
    assert await opener.open() is pool  # opened once; no more tries
    assert len(tries) == 10


async def test_the_readiness_reason_is_the_last_failure_then_none_once_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Pool:
        async def fetchval(self, query: str) -> int:
            return 1

    outcomes: list[Any] = [_refused(), Pool()]

    async def create_pool(settings: Settings, process: str = "ops", **overrides: Any) -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(db, "create_pool", create_pool)
    opener = db.PoolOpener(Settings())
    assert await opener.try_open() is None
    assert await opener.problem() == (
        "certificate verify failed (unable to get local issuer certificate)"
    )
    assert await opener.try_open() is not None
    assert await opener.problem() is None
