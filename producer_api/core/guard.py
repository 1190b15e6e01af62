"""The request guard: who is calling, and how large the body may be, decided from the request
line and headers before a byte of the body is read.

FastAPI reads and parses a body before it runs dependencies, so a bearer check in a
dependency comes too late: an anonymous 24 MB body was read (and a multipart one spooled)
before its 401. This pure ASGI layer finds the route first and checks what it needs:

- every /api/v2 route: a valid Bearer token (the principal is handed on to the route);
- the signed upload URL: its `expires` + `signature` query parameters;
- the LlamaParse webhook: a well-formed, fresh signature header (the HMAC covers the body,
  so the route checks it once the capped body is in).

Then each route's cap: Content-Length over it is 413 at once, a body without one is counted
while it streams. A response sent before the body was read whole carries `Connection: close`
so the client stops sending.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from fastapi.routing import RouteContext, iter_route_contexts
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessa.config import Settings
from accessa.providers.llamaparse import webhook_headers_plausible
from producer_api.core.body import BodyTooLarge
from producer_api.core.errors import ApiError, error_response
from producer_api.core.security import authenticate, check_upload_signature

Auth = Literal["bearer", "signed_url", "webhook", "none"]
API_PREFIX = "/api/v2"
# Room for multipart boundaries and part headers around the file.
_MULTIPART_OVERHEAD = 64 * 1024
_CLOSE = (b"connection", b"close")


@dataclass(frozen=True)
class Policy:
    auth: Auth
    max_bytes: int


def route_policies(settings: Settings) -> tuple[dict[str, Policy], Policy, Policy]:
    """(policy by route name, default of /api/v2 routes, default of the others)."""
    upload = int(settings.max_upload_mb * 1024 * 1024)
    json_cap = settings.api_max_json_kb * 1024
    named = {
        "upload_document": Policy("bearer", upload + _MULTIPART_OVERHEAD),
        "put_upload_content": Policy("signed_url", upload),
        "llamaparse_webhook": Policy("webhook", settings.api_max_webhook_kb * 1024),
    }
    return named, Policy("bearer", json_cap), Policy("none", json_cap)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


class RequestGuard:
    """Authenticates from headers, then enforces the route's body cap while it streams."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.named, self.api_default, self.other_default = route_policies(settings)
        self._flat: list[RouteContext] | None = None

    def _routes(self, scope: Scope) -> list[RouteContext]:
        """The app's routes flattened (FastAPI keeps included routers as branches)."""
        if self._flat is None:
            routes = scope["app"].router.routes
            self._flat = list(iter_route_contexts(routes))
        return self._flat

    def _policy(self, scope: Scope) -> tuple[Policy, dict[str, str]]:
        """The policy of the route this request reaches; a request that reaches none (404,
        405) needs no credentials and may carry no more than a JSON body. The route goes in
        the scope, as routing would put it, so that a refusal is counted under its template."""
        for route in self._routes(scope):
            match, child = route.matches(scope)
            if match == Match.FULL:
                scope["route"] = route.original_route
                name = getattr(route, "name", "")
                if name in self.named:
                    return self.named[name], child.get("path_params", {})
                path = getattr(route, "path", "")
                if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                    return self.api_default, {}
                break
        return self.other_default, {}

    async def _check(self, policy: Policy, scope: Scope, params: dict[str, str]) -> None:
        """ApiError unless the headers (and query) carry what the route needs."""
        if policy.auth == "bearer":
            state = scope.setdefault("state", {})
            app_state = scope["app"].state
            state["principal"] = await authenticate(
                self.settings,
                app_state.jwks,
                _header(scope, b"authorization"),
                _header(scope, b"x-user-id"),
                getattr(app_state, "verified_tokens", None),
            )
        elif policy.auth == "signed_url":
            query = parse_qs(scope["query_string"].decode("latin-1"))
            expires, signature = query.get("expires", [""])[0], query.get("signature", [""])[0]
            if not expires or not signature:
                raise ApiError(
                    401, "signature_required", "the upload URL needs its `expires` and `signature`"
                )
            try:
                check_upload_signature(
                    self.settings,
                    uuid.UUID(params.get("job_id", "")),
                    int(expires),
                    signature[:128],
                )
            except ValueError as exc:
                raise ApiError(
                    403, "invalid_signature", "the upload URL signature is not valid"
                ) from exc
        elif policy.auth == "webhook":
            timestamp = _header(scope, b"x-llamaparse-timestamp") or ""
            signature = _header(scope, b"x-llamaparse-signature") or ""
            secret = self.settings.llamaparse_webhook_secret.get_secret_value()
            if not secret or not webhook_headers_plausible(timestamp, signature):
                raise ApiError(
                    401, "invalid_signature", "the webhook signature is missing or not valid"
                )
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > policy.max_bytes:
            raise ApiError(
                413, "file_too_large", f"the request body is larger than {policy.max_bytes} bytes"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy, params = self._policy(scope)
        try:
            await self._check(policy, scope, params)
        except ApiError as exc:
            cid = scope.get("state", {}).get("correlation_id")
            headers = {**exc.headers, "Connection": "close"}
            response = error_response(exc.status, exc.code, exc.message, cid, headers)
            await response(scope, receive, send)
            return
        body_done = not _has_body(scope)
        seen = 0

        async def capped_receive() -> Message:
            nonlocal seen, body_done
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > policy.max_bytes:
                    raise BodyTooLarge(policy.max_bytes)
                body_done = body_done or not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done:
                message["headers"] = [*message.get("headers", []), _CLOSE]
            await send(message)

        await self.app(scope, capped_receive, closing_send)
