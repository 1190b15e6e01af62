"""Parser backends behind one interface: `local` (offline, default) and `llamaparse`, which
polls LlamaParse or, in webhook mode, waits for the API to record LlamaParse's callback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg

from accessa.config import Settings
from accessa.errors import PermanentError, TransientError
from accessa.pdf.bombs import DEFAULT_MAX_EXPANDED
from accessa.providers import llamaparse_jobs
from consumers.parser import ocr
from consumers.parser.local import DEFAULT_MAX_PAGES, ParsedPdf, parse_pdf
from consumers.parser.sandbox import DEFAULT_MEMORY_LIMIT_MB, MemoryCappedWorker
from schemas.events import PageQuality

_PAGE_MARKER = "<!-- page "
OCR_BATCH_PAGES = 4  # pages per worker call: progress this often, the PDF pickled this rarely
# The default whole-document budget: a minute, then 1.5 s a page of the page cap. OCR at the
# default 300 dpi measured 1.34 s a page (README, OCR engine) and text pages ~300 a second, so
# a legitimate document at the cap, scanned throughout, fits.
TIMEOUT_BASE_S = 60.0
TIMEOUT_PER_PAGE_S = 1.5

# Told (pages done, pages to do) as OCR proceeds.
Progress = Callable[[int, int], Awaitable[None]]


def document_timeout_s(settings: Settings) -> float:
    """How long one document's parse may take: ACCESSA_PARSER_DOCUMENT_TIMEOUT_S, or sized
    from the page cap (60 s + 1.5 s x 2000 pages = 3060 s)."""
    if settings.parser_document_timeout_s is not None:
        return settings.parser_document_timeout_s
    return TIMEOUT_BASE_S + TIMEOUT_PER_PAGE_S * DEFAULT_MAX_PAGES


class ParserBackend(Protocol):
    async def parse(
        self, pdf: bytes, filename: str, *, document_id: uuid.UUID, progress: Progress | None = None
    ) -> ParsedPdf: ...


class LocalBackend:
    """PDF → markdown in a memory-capped worker process (the bomb guard runs there too): the
    event loop keeps serving, and a PDF that needs too much memory fails as `pdf_bomb`.
    Pages without a usable text layer are then OCR'd in the same worker, a few at a time.
    The whole of it has `document_timeout_s`: past that the worker is killed and the document
    fails `parse_timeout` (permanent: the same PDF would take as long again)."""

    def __init__(
        self,
        max_expanded_bytes: int = DEFAULT_MAX_EXPANDED,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        *,
        ocr_enabled: bool = True,
        ocr_dpi: int = ocr.DEFAULT_DPI,
        ocr_retry_below: float = 0.0,
        document_timeout_s: float = TIMEOUT_BASE_S + TIMEOUT_PER_PAGE_S * DEFAULT_MAX_PAGES,
    ) -> None:
        self.max_expanded_bytes = max_expanded_bytes
        self.worker = MemoryCappedWorker(memory_limit_mb)
        self.ocr_enabled = ocr_enabled
        self.ocr_dpi = ocr_dpi
        self.ocr_retry_below = ocr_retry_below
        self.document_timeout_s = document_timeout_s

    async def parse(
        self, pdf: bytes, filename: str, *, document_id: uuid.UUID, progress: Progress | None = None
    ) -> ParsedPdf:
        deadline = time.monotonic() + self.document_timeout_s
        parsed: ParsedPdf = await self.worker.run(
            parse_pdf,
            pdf,
            max_expanded_bytes=self.max_expanded_bytes,
            ocr=self.ocr_enabled,
            timeout_s=self.document_timeout_s,
        )
        if not self.ocr_enabled or not parsed.textless_pages:
            return parsed
        pending = list(parsed.textless_pages)
        results: dict[int, ocr.OcrText | None] = {}
        for start in range(0, len(pending), OCR_BATCH_PAGES):
            if progress is not None:
                await progress(start, len(pending))
            batch = pending[start : start + OCR_BATCH_PAGES]
            left = max(deadline - time.monotonic(), 0.0)  # 0: times out at once, same error
            results |= await self.worker.run(
                ocr.ocr_pages,
                pdf,
                batch,
                dpi=self.ocr_dpi,
                timeout_s=left,
                retry_below=self.ocr_retry_below,
            )
        if progress is not None:
            await progress(len(pending), len(pending))
        markdown = ocr.merge(parsed.markdown, results)
        if not ocr.MARKER.sub("", markdown).strip():
            raise PermanentError(
                "the PDF has no text layer (scanned or image-only) and OCR found no text",
                code="no_text_layer",
            )
        return dataclasses.replace(
            parsed, markdown=markdown, page_stats=_with_ocr(parsed.page_stats, results)
        )


class LlamaParseBackend:
    """The LlamaParse v1 API (upload, poll, fetch markdown)."""

    def __init__(self, settings: Settings) -> None:
        from accessa.providers.llamaparse import LlamaParseClient

        self.client = LlamaParseClient(
            settings.llamaparse_base_url,
            settings.llamaparse_api_key.get_secret_value(),
            timeout_s=settings.llamaparse_timeout_s,
        )

    async def parse(
        self, pdf: bytes, filename: str, *, document_id: uuid.UUID, progress: Progress | None = None
    ) -> ParsedPdf:
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
        self.notifications = llamaparse_jobs.JobNotifications(settings.dsn_for("parser"))

    async def parse(
        self, pdf: bytes, filename: str, *, document_id: uuid.UUID, progress: Progress | None = None
    ) -> ParsedPdf:
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


def _with_ocr(
    stats: tuple[PageQuality, ...], results: dict[int, ocr.OcrText | None]
) -> tuple[PageQuality, ...]:
    """The pages' figures with what OCR read on each OCR'd page."""
    out = []
    for page in stats:
        if (result := results.get(page.page)) is not None:
            page = page.model_copy(
                update={"ocr_words": result.words, "ocr_confidence": result.confidence}
            )
        out.append(page)
    return tuple(out)


def _parsed(markdown: str) -> ParsedPdf:
    pages = max(markdown.count(_PAGE_MARKER), 1)
    return ParsedPdf(markdown=markdown, pages=pages, parser="llamaparse")


def make_backend(settings: Settings, pool: asyncpg.Pool) -> ParserBackend:
    if settings.parser_backend != "llamaparse":
        return LocalBackend(
            settings.pdf_max_expanded_bytes,
            settings.parser_memory_limit_mb,
            ocr_enabled=settings.ocr == "on",
            ocr_dpi=settings.ocr_dpi,
            ocr_retry_below=settings.quality_min_ocr_confidence,
            document_timeout_s=document_timeout_s(settings),
        )
    if settings.llamaparse_callback_url:
        return LlamaParseWebhookBackend(settings, pool)
    return LlamaParseBackend(settings)
