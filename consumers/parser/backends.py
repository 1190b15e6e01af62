"""Parser backends behind one interface: `local` (offline, default) and `llamaparse`."""

from __future__ import annotations

import asyncio
from typing import Protocol

from accessa.config import Settings
from consumers.parser.local import ParsedPdf, parse_pdf

_PAGE_MARKER = "<!-- page "


class ParserBackend(Protocol):
    async def parse(self, pdf: bytes, filename: str) -> ParsedPdf: ...


class LocalBackend:
    """In-process PDF → markdown, in a worker thread so the event loop keeps serving."""

    async def parse(self, pdf: bytes, filename: str) -> ParsedPdf:
        return await asyncio.to_thread(parse_pdf, pdf)


class LlamaParseBackend:
    """The LlamaParse v1 API (upload, poll, fetch markdown)."""

    def __init__(self, settings: Settings) -> None:
        from consumers.parser.llamaparse import LlamaParseClient

        self.client = LlamaParseClient(
            settings.llamaparse_base_url,
            settings.llamaparse_api_key.get_secret_value(),
            timeout_s=settings.llamaparse_timeout_s,
        )

    async def parse(self, pdf: bytes, filename: str) -> ParsedPdf:
        markdown = await self.client.parse(pdf, filename)
        pages = max(markdown.count(_PAGE_MARKER), 1)
        return ParsedPdf(markdown=markdown, pages=pages, parser="llamaparse")


def make_backend(settings: Settings) -> ParserBackend:
    if settings.parser_backend == "llamaparse":
        return LlamaParseBackend(settings)
    return LocalBackend()
