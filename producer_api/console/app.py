"""The console's own process (`accessa run console`): the operator's pages with the ops
identity, never inside the internet-facing API.

Postgres as `accessa_ops` (cross-user reads, dlq_redrives, the console tables), Kafka as the
ops principal (DLQ reads, redrive into stage topics). uvicorn gets the API's connection
limits (producer_api/core/server.py) and every body is capped at MAX_BODY_BYTES: the
console's only bodies are small forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accessa.config import Settings
from accessa.db import PoolOpener
from accessa.health import broker_check
from accessa.logs import setup_logging
from accessa.runtime.server import run_checks, serve_asgi
from producer_api.console import mount
from producer_api.core.body import BodyTooLarge
from producer_api.core.correlation import CorrelationMiddleware
from producer_api.core.errors import error_response, install_error_handlers
from producer_api.core.server import uvicorn_options

PROCESS = "console"  # Settings.secrets_used; its logins are ops (Postgres and Kafka)
IDENTITY = "ops"
MAX_BODY_BYTES = 16 * 1024
log = logging.getLogger("accessa.console")


class BodyCap:
    """413 for a body over `max_bytes`: at once from Content-Length, else while it streams
    (the API's request guard does this per route; the console has one cap for all)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"").strip()
        if length.isdigit() and int(length) > self.max_bytes:
            cid = scope.get("state", {}).get("correlation_id")
            response = error_response(
                413,
                "file_too_large",
                f"the request body is larger than {self.max_bytes} bytes",
                cid,
                {"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, capped_receive, send)


async def _when_pool_open(app: FastAPI, opener: PoolOpener) -> None:
    app.state.pool = await opener.open()


def create_console_app(settings: Settings) -> FastAPI:
    """The console: its pages under /console, /health and /ready, its own pool as ops."""
    settings.require_production_ready(PROCESS)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = opener = PoolOpener(settings, IDENTITY, min_size=1, max_size=4)
        # As the API: serve at once; if Postgres refuses us, stay up, not ready, and retry.
        app.state.pool = await opener.try_open()
        worker = asyncio.create_task(_when_pool_open(app, opener))
        try:
            yield
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await opener.close()

    app = FastAPI(
        title="Accessa Ingest — operator's console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.pool = None
    install_error_handlers(app)
    mount(app)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/console/", status_code=303)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """Postgres answers (as ops) and the broker is reachable (as ops); 503 otherwise."""
        checks, reasons = await run_checks(
            {
                "postgres": request.app.state.db.problem,
                "kafka": lambda: broker_check(settings, timeout_s=3, process=IDENTITY),
            }
        )
        ok = all(checks.values())
        body = {"ready": ok, "checks": checks, **({"reasons": reasons} if reasons else {})}
        return JSONResponse(body, status_code=200 if ok else 503)

    app.add_middleware(BodyCap)
    app.add_middleware(CorrelationMiddleware)
    return app


def serve_console(settings: Settings) -> None:
    """`accessa run console` until SIGTERM/SIGINT."""
    setup_logging(PROCESS, settings.log_level, settings.log_json)
    log.info(
        "operator's console on http://%s:%d/console/ (as %s)",
        settings.console_host,
        settings.console_port,
        IDENTITY,
    )
    serve_asgi(
        create_console_app(settings),
        settings.console_host,
        settings.console_port,
        settings.shutdown_grace_s,
        **uvicorn_options(settings),
    )
