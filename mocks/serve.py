"""Run the mock servers: both on their configured ports, or one on an ephemeral port for tests.

The servers never touch signal handlers: they stop when cancelled (`serve_mocks`) or told to
(`running_server`, `start_in_thread`), so they can live inside any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from fastapi import FastAPI

from accessa.config import Settings
from mocks import llamaparse_server, openai_server

HOST = "127.0.0.1"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: FastAPI, port: int, host: str = HOST) -> tuple[_Server, socket.socket]:
    # An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (it checks
    # `proto`); without it every response waits ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return _Server(config), sock


async def serve_mocks(settings: Settings) -> None:
    """Serve mock LlamaParse and mock OpenAI until cancelled (or until one of them stops)."""
    latency_ms, failure_rate = settings.mock_latency_ms, settings.mock_failure_rate
    llamaparse = llamaparse_server.create_app(
        latency_ms=latency_ms,
        failure_rate=failure_rate,
        webhook_secret=settings.llamaparse_webhook_secret.get_secret_value(),
    )
    servers = [
        # Containers set ACCESSA_HEALTH_HOST=0.0.0.0 so other services can reach the mocks.
        _server(llamaparse, settings.mock_llamaparse_port, settings.health_host),
        _server(
            openai_server.create_app(latency_ms=latency_ms, failure_rate=failure_rate),
            settings.mock_openai_port,
            settings.health_host,
        ),
    ]
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def running_server(app: FastAPI, port: int = 0) -> AsyncIterator[str]:
    """Serve `app` on this event loop; yields its base URL ("http://127.0.0.1:<port>")."""
    server, sock = _server(app, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn offers no start event to await
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            await task
            raise RuntimeError("mock server did not start")
        await asyncio.sleep(0.005)
    try:
        yield f"http://{HOST}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def start_in_thread(app: FastAPI, port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve `app` from a daemon thread with its own loop; returns (base URL, stop)."""
    server, sock = _server(app, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("mock server did not start")
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://{HOST}:{sock.getsockname()[1]}", stop
