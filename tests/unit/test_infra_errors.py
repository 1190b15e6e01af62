"""Which errors are retried in place (infrastructure) and which are the record's (retry
topics, then the DLQ); the alerting of long in-place retries; the poison-pill fault."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import uuid

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError

from accessa.config import Settings
from accessa.runtime import infra
from accessa.runtime.faults import FaultInjector
from accessa.runtime.infra import is_infra, retry_infra
from accessa.runtime.metrics import REGISTRY

INFRA = [
    ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
    ConnectionResetError(errno.ECONNRESET, "reset by peer"),
    BrokenPipeError(errno.EPIPE, "broken pipe"),
    TimeoutError(),
    OSError(errno.ETIMEDOUT, "timed out"),  # Python makes it a TimeoutError
    OSError(errno.EHOSTUNREACH, "No route to host"),
    OSError(errno.ENETUNREACH, "Network is unreachable"),
    socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432), "
        "[Errno 99] Cannot assign requested address"
    ),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    KafkaConnectionError(),
    NodeNotReadyError(),
    RequestTimedOutError(),
]
NOT_INFRA = [
    PermissionError(errno.EACCES, "Permission denied", "/storage/raw/x.pdf"),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EROFS, "Read-only file system"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "raw/x.pdf"),
    IsADirectoryError(errno.EISDIR, "Is a directory"),
    OSError("cannot identify image file"),  # a library's "bad file", no errno
    ValueError("bad"),
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
]


@pytest.mark.parametrize("exc", INFRA, ids=repr)
def test_connectivity_errors_are_infrastructure(exc: BaseException) -> None:
    assert is_infra(exc)


@pytest.mark.parametrize("exc", NOT_INFRA, ids=repr)
def test_other_os_errors_are_the_records_failure(exc: BaseException) -> None:
    assert not is_infra(exc)


def _retry_seconds(stage: str) -> float | None:
    return REGISTRY.get_sample_value("accessa_infra_retry_seconds", {"stage": stage})


async def test_a_permission_error_is_not_retried_in_place() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        await retry_infra(op, "record", stage="unit-denied")
    assert calls == 1


async def test_in_place_retries_show_on_the_gauge_and_warn_once_a_minute(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stage = f"unit-{uuid.uuid4().hex[:6]}"
    sleep = asyncio.sleep
    monkeypatch.setattr(infra.asyncio, "sleep", lambda _s: sleep(0.01))  # type: ignore[attr-defined]
    waited: list[float | None] = []

    async def op() -> str:
        waited.append(_retry_seconds(stage))
        if len(waited) < 5:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
        return "ok"

    with caplog.at_level(logging.DEBUG, logger="accessa.runtime"):
        assert await retry_infra(op, "record", stage=stage) == "ok"
    assert waited[0] is None and all(w and w > 0 for w in waited[2:])  # oldest wait's age
    assert _retry_seconds(stage) == 0.0  # nothing waiting any more
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # 4 failures, one warning
    assert "retrying in place" in warnings[0].getMessage()


def test_kill_on_document_fault_is_parsed_and_ignores_other_documents() -> None:
    doomed = uuid.uuid4()
    settings = Settings(_env_file=None, fault_inject=f"parser:kill_on_document:{doomed}")
    faults = FaultInjector(settings, "parser")
    assert faults.kill_document == str(doomed) and faults.target is None
    faults.handling(uuid.uuid4())  # another document: still alive
    faults.point("before_db_commit")
    assert FaultInjector(settings, "chunker").kill_document is None
