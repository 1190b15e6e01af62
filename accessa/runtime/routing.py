"""Failure routing: where a record goes when its handling fails, by the error's type.

- TransientError (and any unexpected error): to `<topic>.retry.<n>`, due in
  `retry_base_delay_s * 2^(n-1)`; after the last attempt, the DLQ. RecoverableError never
  exhausts its attempts (its wait is not the record's fault).
- PermanentError (PoisonMessage included): to `<topic>.dlq` now, the job `failed_<stage>`.
- A record that killed its process `max_delivery_attempts` times: the DLQ, unstarted.
"""

from __future__ import annotations

import errno
import logging
import time
import traceback
from typing import Any

import asyncpg

from accessa import jobs, tracing
from accessa.config import Settings
from accessa.errors import PermanentError, PipelineError, RecoverableError
from accessa.runtime import metrics
from accessa.runtime.incoming import Incoming, as_int
from accessa.runtime.producing import Produce, record_size
from accessa.topics import Topics
from schemas.headers import Headers
from schemas.topics import Stage

log = logging.getLogger("accessa.runtime")


class Router:
    """Routes one stage's failed records to its retry topics or its DLQ."""

    def __init__(
        self, name: str, stage: Stage, settings: Settings, topics: Topics, pool: asyncpg.Pool
    ) -> None:
        self.name = name
        self.stage = stage
        self.settings = settings
        self.topics = topics
        self.pool = pool
        # The longest a retry record waits: the last backoff step, or a budget recheck if
        # that is longer. A due time further after the record's own timestamp is not trusted.
        last = settings.retry_base_delay_s * 2 ** max(settings.retry_max_attempts - 1, 0)
        self.max_delay_s = max(last, settings.budget_recheck_s)
        self.dead_lettered = metrics.MESSAGES.labels(name, "dead_lettered")
        self.retried = metrics.MESSAGES.labels(name, "retried")

    def due_at_ms(self, item: Incoming) -> float:
        """When a retry record is due: its header (garbage: now), capped by `max_delay_s`."""
        due_at = as_int(item.headers.get(Headers.DUE_AT))
        return float(min(due_at, item.record.timestamp + self.max_delay_s * 1000))

    async def crashed(self, item: Incoming, starts: int) -> list[Produce]:
        """Dead-letter a record whose handler started `starts` times and never finished."""
        exc = PermanentError(
            f"the {self.name} process died {starts} times handling this record "
            "(killed: out of memory, a crash in native code, or SIGKILL)",
            code="crashed_consumer",
        )
        return await self.failed(item, exc)

    async def failed(self, item: Incoming, exc: Exception) -> list[Produce]:
        """Record the failure on the job and return the retry or DLQ copy to produce."""
        record, headers, attempt = item.record, item.headers, item.attempt
        error = exc if isinstance(exc, PipelineError) else None
        code = error.code if error else f"unexpected_{type(exc).__name__}"
        if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
            # a full disk, EACCES...
            code = f"os_{errno.errorcode[exc.errno]}"
        message = error.message if error else str(exc) or type(exc).__name__
        kind = "permanent" if isinstance(exc, PermanentError) else "transient"
        metrics.FAILURES.labels(self.name, kind, code).inc()
        reason = {
            "stage": self.name,
            "code": code,
            "message": message[:2000],
            "class": kind,
            "attempt": attempt,
        }
        origin = {
            Headers.ORIGINAL_TOPIC: headers.get(Headers.ORIGINAL_TOPIC, record.topic),
            Headers.ORIGINAL_PARTITION: headers.get(
                Headers.ORIGINAL_PARTITION, str(record.partition)
            ),
            Headers.ORIGINAL_OFFSET: headers.get(Headers.ORIGINAL_OFFSET, str(record.offset)),
        }
        recoverable = isinstance(exc, RecoverableError)
        if kind == "transient" and (recoverable or attempt < self.settings.retry_max_attempts):
            n = min(attempt + 1, max(self.settings.retry_max_attempts, 1))
            delay = self.settings.retry_base_delay_s * 2 ** (n - 1)
            delay = min(max(delay, getattr(exc, "defer_s", None) or 0.0), self.max_delay_s)
            log.warning("transient failure, retry %d in %.1fs: %s: %s", n, delay, code, message)
            tracing.failed(exc, code=code, kind=kind, outcome="retry")
            await self._on_job(
                jobs.retrying, item, error=reason, count_attempt=not recoverable, actor=self.name
            )
            retry_headers = {
                **headers,
                **origin,
                Headers.ATTEMPT: str(attempt if recoverable else n),
                Headers.DUE_AT: str(int(time.time() * 1000 + delay * 1000)),
                Headers.ERROR_CODE: code,
            }
            self.retried.inc()
            topic = self.topics.retry(self.stage.input, n)
            return [Produce(topic, record.key, record.value or b"", retry_headers)]
        log.error("dead-lettering record: %s: %s", code, message)
        tracing.failed(exc, code=code, kind=kind, outcome="dlq")
        await self._on_job(
            jobs.fail, item, status=self.stage.failed_status, actor=self.name, error=reason
        )
        stack = "".join(traceback.format_exception(exc, limit=-3))[-1500:]
        dlq_headers = {
            **headers,
            **origin,
            Headers.ERROR_CLASS: kind,
            Headers.ERROR_CODE: code,
            Headers.ERROR_MESSAGE: message[:1000],
            Headers.ERROR_STACK: stack,
            Headers.FAILED_AT: str(int(time.time() * 1000)),
        }
        value = record.value or b""
        if record_size(record.key, value, dlq_headers) > self.settings.max_message_bytes:
            # Too big to copy with its error headers (the producer would refuse it and stop
            # the partition here): keep the reason and where the bytes are, not the bytes.
            dlq_headers[Headers.VALUE_OMITTED] = str(len(value))
            value = b""
        self.dead_lettered.inc()
        return [Produce(self.topics.dlq(self.stage.input), record.key, value, dlq_headers)]

    async def _on_job(self, transition: Any, item: Incoming, **kwargs: Any) -> None:
        if item.job_id is None:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await transition(conn, job_id=item.job_id, **kwargs)
