"""Parser backends behind one interface: `local` (offline, default) and `llamaparse`, which
polls LlamaParse or, in webhook mode, waits for the API to record LlamaParse's callback."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Protocol

import asyncpg

from accessa.config import Settings
from accessa.errors import PermanentError, TransientError
from accessa.pdf_bombs import DEFAULT_MAX_EXPANDED
from consumers.parser import llamaparse_jobs
from consumers.parser.local import ParsedPdf, parse_pdf
from consumers.parser.sandbox import DEFAULT_MEMORY_LIMIT_MB, MemoryCappedWorker

_PAGE_MARKER = "<!-- page "


class ParserBackend(Protocol):
    async def parse(self, pdf: bytes, filename: str, *, document_id: uuid.UUID) -> ParsedPdf: ...


class LocalBackend:
    """PDF → markdown in a memory-capped worker process (the bomb guard runs there too): the
    event loop keeps serving, and a PDF that needs too much memory fails as `pdf_bomb`."""

    def __init__(
        self,
        max_expanded_bytes: int = DEFAULT_MAX_EXPANDED,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
    ) -> None:
        self.max_expanded_bytes = max_expanded_bytes
        self.worker = MemoryCappedWorker(memory_limit_mb)

    async def parse(self, pdf: bytes, filename: str, *, document_id: uuid.UUID) -> ParsedPdf:
        return await self.worker.run(parse_pdf, pdf, max_expanded_bytes=self.max_expanded_bytes)


class LlamaParseBackend:
    """The LlamaParse v1 API (upload, poll, fetch markdown)."""

    def __init__(self, settings: Settings) -> None:
        from consumers.parser.llamaparse import LlamaParseClient

        self.client = LlamaParseClient(
            settings.llamaparse_base_url,
            settings.llamaparse_api_key.get_secret_value(),
            timeout_s=settings.llamaparse_timeout_s,
        )

    async def parse(self, pdf: bytes, filename: str, *, document_id: uuid.UUID) -> ParsedPdf:
        return _parsed(await self.client.parse(pdf, filename))


class LlamaParseWebhookBackend(LlamaParseBackend):
    """Webhook mode: one LlamaParse job per document, submitted with the callback URL and
    recorded in `llamaparse_jobs` (a redelivery waits for the same job); then wait for the
    API's NOTIFY, re-checking the row and the job in case a webhook is lost or overtook the
    insert; then fetch the markdown, which raises the permanent error of a failed job."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        super().__init__(settings)
        self.pool = pool
        self.callback_url = settings.llamaparse_callback_url
        self.timeout_s = settings.llamaparse_timeout_s
        self.recheck_s = settings.llamaparse_webhook_recheck_s
        self.notifications = llamaparse_jobs.JobNotifications(settings.dsn)

    async def parse(self, pdf: bytes, filename: str, *, document_id: uuid.UUID) -> ParsedPdf:
        job_id = await llamaparse_jobs.job_of(self.pool, document_id)
        if job_id is not None:
            try:
                return await self._result(job_id)
            except PermanentError as e:
                if e.code != "llamaparse_not_found":
                    raise
                await llamaparse_jobs.forget(self.pool, document_id)  # purged: submit again
        job_id = await self.client.submit(pdf, filename, webhook_url=self.callback_url)
        job_id = await llamaparse_jobs.record_submitted(self.pool, document_id, job_id)
        return await self._result(job_id)

    async def _result(self, job_id: str) -> ParsedPdf:
        deadline = time.monotonic() + self.timeout_s
        async with self.notifications.watch(job_id) as notified:
            while True:
                notified.clear()
                if await self._ended(job_id):
                    break
                if (left := deadline - time.monotonic()) <= 0:
                    raise TransientError(
                        f"no webhook for LlamaParse job {job_id} yet", code="parse_timeout"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(notified.wait(), min(self.recheck_s, left))
        return _parsed(await self.client.fetch_markdown(job_id))

    async def _ended(self, job_id: str) -> bool:
        """The row says the job ended, or LlamaParse does (and the row is brought up to date)."""
        if await llamaparse_jobs.status_of(self.pool, job_id) != "pending":
            return True
        try:
            status = await self.client.status(job_id)
        except TransientError:
            return False  # LlamaParse unreachable for now: keep waiting for the webhook
        outcome = llamaparse_jobs.outcome_of(status["status"])
        if outcome == "pending":
            return False
        error = status.get("error_message") if outcome == "error" else None
        await llamaparse_jobs.record_outcome(self.pool, job_id, outcome, error)
        return True


def _parsed(markdown: str) -> ParsedPdf:
    pages = max(markdown.count(_PAGE_MARKER), 1)
    return ParsedPdf(markdown=markdown, pages=pages, parser="llamaparse")


def make_backend(settings: Settings, pool: asyncpg.Pool) -> ParserBackend:
    if settings.parser_backend != "llamaparse":
        return LocalBackend(settings.pdf_max_expanded_bytes, settings.parser_memory_limit_mb)
    if settings.llamaparse_callback_url:
        return LlamaParseWebhookBackend(settings, pool)
    return LlamaParseBackend(settings)
