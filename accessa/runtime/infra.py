"""Database or broker unreachable: told apart from a record's own failure, retried in place."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)

from accessa.runtime import metrics

T = TypeVar("T")
log = logging.getLogger("accessa.runtime")


# The database or broker is down, restarting or unreachable: retried in place, no attempt
# spent, no record blamed. A server shutdown (57P0x) and asyncpg's protocol-state errors on a
# dropped connection count too; TLS errors come only from those connections (HTTP clients wrap
# theirs) and say nothing about the record either.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # ETIMEDOUT included
    socket.gaierror,  # name resolution
    ssl.SSLError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
    KafkaTimeoutError,
)
# Connectivity errnos without an exception class of their own.
_UNREACHABLE = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.EHOSTDOWN,
        errno.ENOTCONN,
        errno.EADDRNOTAVAIL,
    }
)


def is_infra(exc: BaseException) -> bool:
    """Whether `exc` says the database or broker is unreachable (retry in place) rather than
    that this record failed. Any other OSError (EACCES, ENOSPC, EROFS, ENOENT from storage, a
    library's "cannot read this file") is not: in-place retries would never end, never
    dead-letter and never alert; it is a TransientError (retry topics, then the DLQ)."""
    if isinstance(exc, INFRA_ERRORS):
        return True
    if isinstance(exc, OSError):
        # asyncio's create_connection when every address of a host failed: no errno.
        multiple = exc.errno is None and str(exc).startswith("Multiple exceptions: ")
        return exc.errno in _UNREACHABLE or multiple
    return False


class _InfraWaits:
    """In-place retries under way per stage: the age of the oldest is the gauge
    `accessa_infra_retry_seconds`, and a warning is logged at most once a minute per stage,
    not once per attempt of every waiting record."""

    WARN_EVERY_S = 60.0

    def __init__(self) -> None:
        self.since: dict[str, dict[object, float]] = {}
        self.warned: dict[str, float] = {}

    def age(self, stage: str) -> float:
        starts = self.since.get(stage)
        return time.monotonic() - min(starts.values()) if starts else 0.0

    def watch(self, stage: str) -> None:
        """Export the gauge for `stage` from now on (0 while nothing waits), so that dashboards
        and alerts find it before the first outage."""
        if stage not in self.since:
            self.since[stage] = {}
            metrics.INFRA_RETRY.labels(stage).set_function(lambda: self.age(stage))

    def failed(self, stage: str, token: object, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self.watch(stage)
        self.since[stage].setdefault(token, now)
        if now - self.warned.get(stage, -self.WARN_EVERY_S) >= self.WARN_EVERY_S:
            self.warned[stage] = now
            log.warning(
                "%s: infrastructure unavailable for %.0fs, %d retrying in place: %r",
                what,
                self.age(stage),
                len(self.since[stage]),
                exc,
            )
        else:
            log.debug("%s: infrastructure unavailable, retrying in place: %r", what, exc)

    def done(self, stage: str, token: object) -> None:
        self.since.get(stage, {}).pop(token, None)


INFRA_WAITS = _InfraWaits()


async def retry_infra(op: Callable[[], Awaitable[T]], what: str, *, stage: str = "") -> T:
    """`op()`, retried in place while the database or broker is unreachable (`is_infra`)."""
    delay = 0.5
    token = object()
    try:
        while True:
            try:
                return await op()
            except Exception as exc:
                if not is_infra(exc):
                    raise
                INFRA_WAITS.failed(stage, token, what, exc)
            await asyncio.sleep(delay)  # backoff: the database or broker is restarting
            delay = min(delay * 2, 10)
    finally:
        INFRA_WAITS.done(stage, token)
