"""Refuse oversized request bodies before they are read or spooled (413, the error shape)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer_api.core.errors import error_response

# Room for multipart boundaries and the other fields around the file.
_OVERHEAD = 64 * 1024


class BodyLimitMiddleware:
    """Checks Content-Length, and counts the bytes of bodies sent without one."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes + _OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            cid = scope.get("state", {}).get("correlation_id")
            message = f"the request body is larger than {self.max_bytes} bytes"
            await error_response(413, "file_too_large", message, cid)(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


class BodyTooLarge(HTTPException):
    """A body grew past the limit while being read; FastAPI re-raises HTTPExceptions from body
    reading, so the error handlers render it as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")
