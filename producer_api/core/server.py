"""How uvicorn serves the API: bounded connections, header size and header read time.

uvicorn bounds concurrency (`limit_concurrency`, 503 past it), idle keep-alive time and, on
h11, the size of an unfinished request line + headers; it has no timeout for headers that
never finish (a slowloris connection stays open for ever). `HeaderTimeoutProtocol` adds one:
written here because uvicorn offers no hook for it, and it is a few lines over its protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from accessa.config import Settings


class HeaderTimeoutProtocol(H11Protocol):
    """h11 that closes a connection whose request headers are not complete `header_timeout_s`
    after it opened or after its previous response."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info(
                "closing a connection whose headers took over %.0f s", self.header_timeout_s
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in: a request is running
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config keywords of the API's limits (ACCESSA_API_*)."""
    protocol = type(
        "HeaderTimeoutH11",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": settings.api_header_timeout_s},
    )
    return {
        "http": protocol,
        "limit_concurrency": settings.api_limit_concurrency,
        "timeout_keep_alive": settings.api_timeout_keep_alive_s,
        "h11_max_incomplete_event_size": settings.api_max_header_bytes,
    }
