"""Correlation ids: kept from `X-Correlation-ID` when well-formed, generated otherwise, echoed
on every response, set for log lines, and the last line of defence for unexpected errors."""

from __future__ import annotations

import json
import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessa.logs import correlation_id

HEADER = "X-Correlation-ID"
# A uuid matches this too; anything else (too long, spaces, control chars) is replaced.
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEADER_BYTES = HEADER.lower().encode()
log = logging.getLogger("accessa.api")


def accept_correlation_id(value: str | None) -> str:
    """The caller's id if it is safe to log and forward, else a fresh uuid4."""
    if value is not None and _VALID.fullmatch(value):
        return value
    return str(uuid.uuid4())


class CorrelationMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware), so the id is in the request's context throughout."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(_HEADER_BYTES)
        cid = accept_correlation_id(raw.decode("latin-1") if raw is not None else None)
        scope.setdefault("state", {})["correlation_id"] = cid
        token = correlation_id.set(cid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0] != _HEADER_BYTES]
                message["headers"] = [*headers, (_HEADER_BYTES, cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            await _send_internal_error(send_with_id, cid)
        finally:
            correlation_id.reset(token)


async def _send_internal_error(send: Send, cid: str) -> None:
    body = json.dumps(
        {"error": {"code": "internal_error", "message": "internal error", "correlation_id": cid}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
