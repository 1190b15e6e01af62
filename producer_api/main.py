"""The Producer API: `create_app(settings)` wires routers, middleware and the lifespan (pool,
storage, JWKS client, the outbox relay); `serve(settings)` runs it under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI

from accessa import tracing
from accessa.config import Settings
from accessa.db import PoolOpener
from accessa.logs import setup_logging
from accessa.runtime.server import serve_asgi
from accessa.storage import S3Storage, make_storage
from producer_api import crud, outbox, ratelimit
from producer_api.core.correlation import CorrelationMiddleware
from producer_api.core.errors import install_error_handlers
from producer_api.core.guard import RequestGuard
from producer_api.core.security import VerifiedTokens, jwks_client
from producer_api.core.server import uvicorn_options
from producer_api.job_events import JobEventHub
from producer_api.metrics import UPLOADS_EXPIRED, MetricsMiddleware
from producer_api.outbox_publisher import KafkaPublisher
from producer_api.routes import api_router, health

log = logging.getLogger("accessa.api")
HOUSEKEEPING_S = 600.0


async def expire_uploads(pool: asyncpg.Pool, settings: Settings) -> int:
    """Expire two-step uploads whose URL lapsed `upload_expiry_grace_s` ago; how many."""
    after = settings.signed_url_ttl_s + settings.upload_expiry_grace_s
    expired = await crud.expire_abandoned(conn=pool, after_s=float(after))
    if expired:
        UPLOADS_EXPIRED.inc(expired)
        log.info("expired %d abandoned upload(s): no bytes within %d s", expired, after)
    return expired


async def _housekeeping(app: FastAPI, stop: asyncio.Event) -> None:
    """Drop expired rate-limit windows and expire abandoned uploads now and then."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await ratelimit.cleanup(app.state.pool)
        with contextlib.suppress(Exception):  # tombstones outlive any in-flight event by far
            await app.state.pool.execute(
                "DELETE FROM deleted_jobs WHERE deleted_at < now() - interval '30 days'"
            )
        try:
            await expire_uploads(app.state.pool, app.state.settings)
        except Exception as exc:
            log.warning("expiring abandoned uploads failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HOUSEKEEPING_S)


async def _when_pool_open(
    app: FastAPI, opener: PoolOpener, stop: asyncio.Event, with_relay: bool
) -> None:
    """Once Postgres accepts the process: the pool for requests, housekeeping, the relay."""
    app.state.pool = pool = await opener.open()
    settings: Settings = app.state.settings
    tasks = [_housekeeping(app, stop)]
    if with_relay:
        tasks.append(outbox.relay(settings, pool, KafkaPublisher(settings), stop))
    await asyncio.gather(*tasks, return_exceptions=True)


def create_app(settings: Settings, *, with_relay: bool = True) -> FastAPI:
    """The API. `with_relay=False` leaves publishing to another relay (tests, `run relay`)."""
    settings.require_production_ready("api")  # here, so an app built any way refuses them

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.storage = storage = make_storage(settings)
        if isinstance(storage, S3Storage):
            await asyncio.to_thread(storage.ensure_bucket)
        app.state.db = opener = PoolOpener(settings, "api")
        app.state.job_events = hub = JobEventHub(settings.dsn_for("api"))
        # One try before serving, so that requests find the pool; if Postgres refuses us, the
        # process stays up, not ready with the reason, and keeps trying in the background.
        app.state.pool = await opener.try_open()
        stop = asyncio.Event()
        worker = asyncio.create_task(_when_pool_open(app, opener, stop, with_relay))
        try:
            yield
        finally:
            stop.set()
            if opener.pool is None:
                worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await hub.close()
            await opener.close()
            tracing.shutdown()

    app = FastAPI(
        title="Accessa Ingest — Producer API",
        version="2.0.0",
        summary="Upload insurance PDFs and follow their jobs through the pipeline.",
        lifespan=lifespan,
        telemetry={"tracing": False},  # the request span comes from tracing.instrument_api
    )
    app.state.settings = settings
    app.state.jwks = jwks_client(settings)
    app.state.verified_tokens = VerifiedTokens.for_settings(settings)
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(health.router)
    app.add_middleware(RequestGuard, settings=settings)  # auth + body caps before the body
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(CorrelationMiddleware)  # outermost: every response carries the id
    tracing.instrument_api(app)
    return app


def serve(settings: Settings) -> None:
    """`accessa run api`: the API (with its outbox relay) until SIGTERM/SIGINT."""
    setup_logging("api", settings.log_level, settings.log_json)
    tracing.setup(settings, "api")
    log.info("producer API on http://%s:%d (docs at /docs)", settings.api_host, settings.api_port)
    serve_asgi(
        create_app(settings),
        settings.api_host,
        settings.api_port,
        settings.shutdown_grace_s,
        **uvicorn_options(settings),
    )
