"""Process hosting: `/health`, `/ready`, `/metrics` on the process's port, with the stage
runtime started and drained by the ASGI lifespan (uvicorn turns SIGTERM/SIGINT into it)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accessa import tracing
from accessa.config import Settings
from accessa.db import PoolOpener
from accessa.health import broker_check
from accessa.logs import setup_logging
from accessa.runtime import collector, metrics
from accessa.runtime.app import StageApp
from accessa.runtime.context import StageResources
from accessa.runtime.faults import FaultInjector
from accessa.runtime.lag import lag_reporter
from accessa.runtime.stage import StageRuntime
from accessa.storage import make_storage

ReadyCheck = Callable[[], Awaitable[bool | str | None]]
"""A readiness check: True/None when ready; False or the reason (a string) when not."""

log = logging.getLogger("accessa.runtime")


async def run_checks(checks: dict[str, ReadyCheck]) -> tuple[dict[str, bool], dict[str, str]]:
    """Each check's outcome, and a readable reason for each that failed."""
    results: dict[str, bool] = {}
    reasons: dict[str, str] = {}
    for name, check in checks.items():
        try:
            outcome = await asyncio.wait_for(check(), 5)
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        results[name] = outcome is True or outcome is None
        if isinstance(outcome, str):
            reasons[name] = outcome
    return results, reasons


def health_app(
    process: str,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]],
    checks: dict[str, ReadyCheck],
) -> Starlette:
    """The three operational endpoints every process serves."""

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "process": process})

    async def ready(_: Request) -> Response:
        results, reasons = await run_checks(checks)
        ok = all(results.values())
        metrics.READY.labels(process).set(1 if ok else 0)
        body = {"ready": ok, "checks": results, **({"reasons": reasons} if reasons else {})}
        return JSONResponse(body, status_code=200 if ok else 503)

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


def serve_asgi(
    asgi: Callable[..., Any], host: str, port: int, grace_s: float, **options: Any
) -> None:
    """uvicorn until SIGTERM/SIGINT; `options` are more uvicorn.Config keywords (limits)."""
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(grace_s),
        **options,
    )
    DrainingServer(config).run()


def dump_tasks() -> None:
    """`kill -USR1 <pid>`: log where every asyncio task of the process is waiting."""
    for task in asyncio.all_tasks():
        stack = io.StringIO()
        task.print_stack(file=stack)
        logging.getLogger("accessa.runtime").warning(
            "task %s:\n%s", task.get_name(), stack.getvalue()
        )


@dataclass
class Starting:
    """How far the start-up task has got: for /ready, and for what the shutdown stops."""

    runtime: StageRuntime[Any] | None = None
    kafka_problem: str | None = None
    started: bool = False
    reporter: asyncio.Task[None] | None = None


async def start_when_allowed(runtime: StageRuntime[Any], state: Starting) -> None:
    """Start consuming once the principal may: until then the process stays up and not ready
    with the reason, and retries with backoff (one log line per try, not a crash loop)."""
    delay = 1.0
    while (problem := await runtime.access_problem()) is not None:
        state.kafka_problem = problem
        log.error("cannot consume yet: %s (retrying in %.0f s)", problem, delay)
        await asyncio.sleep(delay)  # backoff between access checks
        delay = min(delay * 2, 60.0)
    await runtime.start()
    state.started = True
    state.reporter = asyncio.create_task(lag_reporter(runtime))


async def start_with_pool(
    app: StageApp[Any], settings: Settings, opener: PoolOpener, state: Starting
) -> None:
    """Open the pool (retrying while Postgres refuses the process), then start consuming once
    Kafka allows it: no record is taken before both are there."""
    pool = await opener.open()
    res = StageResources(settings, pool, make_storage(settings), FaultInjector(settings, app.name))
    runtime = StageRuntime(app, settings, res)
    state.runtime = runtime
    await start_when_allowed(runtime, state)


def run_stage(app: StageApp[Any], settings: Settings) -> None:
    """Run one stage process until SIGTERM/SIGINT, then drain and leave the group."""
    settings.require_production_ready(app.name)  # before anything starts, however it was run
    setup_logging(app.name, settings.log_level, settings.log_json)
    tracing.setup(settings, app.name)
    collector.tune()
    state = Starting()
    # A handler may hold two connections at once (e.g. the embedder's advisory lock plus
    # a write): size the pool so every concurrent record can, or they deadlock.
    opener = PoolOpener(
        settings, app.name, max_size=max(settings.db_pool_max, 2 * settings.stage_concurrency + 2)
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        # In the background, so /health and /ready answer while Postgres or Kafka refuse us.
        starter = asyncio.create_task(start_with_pool(app, settings, opener, state))
        try:
            yield
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
            if state.started and state.reporter and state.runtime:  # set once consuming
                state.reporter.cancel()
                await state.runtime.stop()
            await opener.close()
            tracing.shutdown()

    async def kafka_ready() -> str | None:
        if not state.started:
            return state.kafka_problem or "the stage has not started consuming yet"
        return await broker_check(settings, timeout_s=3, process=app.name)

    asgi = health_app(app.name, lifespan, {"postgres": opener.problem, "kafka": kafka_ready})
    serve_asgi(asgi, settings.health_host, settings.port_for(app.name), settings.shutdown_grace_s)
