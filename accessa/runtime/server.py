"""Process hosting: `/health`, `/ready`, `/metrics` on the process's port, with the stage
runtime started and drained by the ASGI lifespan (uvicorn turns SIGTERM/SIGINT into it)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accessa.config import Settings
from accessa.db import create_pool
from accessa.infra.kafka import broker_reachable
from accessa.logs import setup_logging
from accessa.runtime import metrics
from accessa.runtime.context import StageResources
from accessa.runtime.faults import FaultInjector
from accessa.runtime.lag import lag_reporter
from accessa.runtime.stage import StageApp, StageRuntime
from accessa.storage import make_storage

ReadyCheck = Callable[[], Awaitable[bool]]


def health_app(
    process: str,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]],
    checks: dict[str, ReadyCheck],
) -> Starlette:
    """The three operational endpoints every process serves."""

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "process": process})

    async def ready(_: Request) -> Response:
        results = {}
        for name, check in checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), 5)
            except Exception:
                results[name] = False
        ok = all(results.values())
        return JSONResponse({"ready": ok, "checks": results}, status_code=200 if ok else 503)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics_endpoint),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class DrainingServer(uvicorn.Server):
    """uvicorn, but a shutdown that drained cleanly exits 0 instead of re-raising SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def serve_asgi(asgi: object, host: str, port: int, grace_s: float) -> None:
    config = uvicorn.Config(
        asgi, host=host, port=port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(grace_s),
    )  # fmt: skip
    DrainingServer(config).run()


def dump_tasks() -> None:
    """`kill -USR1 <pid>`: log where every asyncio task of the process is waiting."""
    for task in asyncio.all_tasks():
        stack = io.StringIO()
        task.print_stack(file=stack)
        logging.getLogger("accessa.runtime").warning("task %s:\n%s", task.get_name(),
                                                     stack.getvalue())  # fmt: skip


def run_stage(app: StageApp, settings: Settings) -> None:
    """Run one stage process until SIGTERM/SIGINT, then drain and leave the group."""
    setup_logging(app.name, settings.log_level, settings.log_json)
    state: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # A handler may hold two connections at once (e.g. the embedder's advisory lock plus
        # a write): size the pool so every concurrent record can, or they deadlock.
        pool = await create_pool(
            settings, max_size=max(settings.db_pool_max, 2 * settings.stage_concurrency + 2)
        )
        storage = make_storage(settings)
        res = StageResources(settings, pool, storage, FaultInjector(settings, app.name))
        runtime = StageRuntime(app, settings, res)
        state["pool"] = pool
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        await runtime.start()
        reporter = asyncio.create_task(lag_reporter(runtime))
        try:
            yield
        finally:
            reporter.cancel()
            await runtime.stop()
            await pool.close()

    async def db_ready() -> bool:
        pool = state.get("pool")
        return pool is not None and await pool.fetchval("SELECT 1") == 1  # type: ignore[union-attr]

    async def kafka_ready() -> bool:
        return await broker_reachable(settings.bootstrap_servers, timeout_s=3)

    asgi = health_app(app.name, lifespan, {"postgres": db_ready, "kafka": kafka_ready})
    serve_asgi(asgi, settings.health_host, settings.port_for(app.name), settings.shutdown_grace_s)
