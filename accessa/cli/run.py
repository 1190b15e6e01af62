"""`accessa run <process>`: one process in the foreground, or `all` as children."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
from enum import StrEnum
from typing import IO, Annotated

import typer
from rich.text import Text

from accessa.cli.output import console
from accessa.config import get_settings


class Process(StrEnum):
    api = "api"
    parser = "parser"
    chunker = "chunker"
    embedder = "embedder"
    finalizer = "finalizer"
    mocks = "mocks"
    relay = "relay"
    console = "console"
    compactor = "compactor"
    all = "all"


STAGE_PROCESSES = ("parser", "chunker", "embedder", "finalizer")
_COLORS = {
    "api": "cyan",
    "parser": "green",
    "chunker": "yellow",
    "embedder": "magenta",
    "finalizer": "blue",
    "mocks": "white",
    "console": "bright_red",
    "compactor": "bright_blue",
}


def run(
    process: Annotated[Process, typer.Argument(help="Which process to run.")],
    with_mocks: Annotated[
        bool, typer.Option(help="With `all`: also run the mock LlamaParse/OpenAI servers.")
    ] = True,
    base_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65530,
            envvar="ACCESSA_HEALTH_BASE_PORT",
            help="Health ports: parser base+1 .. finalizer base+4, compactor +5 (default 9100).",
        ),
    ] = None,
) -> None:
    """Run a process until SIGTERM/SIGINT, then drain in-flight work and exit."""
    settings = get_settings()
    if process == Process.all:
        # Each child checks its own secrets (`accessa run <name>`).
        names = (["mocks"] if with_mocks else []) + [
            "api",
            *STAGE_PROCESSES,
            "console",
            "compactor",
        ]
        raise typer.Exit(run_children(names, child_env(base_port)))
    settings.require_production_ready(process.value)  # exit 3 in one line (cli/unreachable.py)
    if process == Process.api:
        from producer_api.main import serve

        serve(settings)
    elif process == Process.console:
        from producer_api.console.app import serve_console

        serve_console(settings)
    elif process == Process.relay:
        from producer_api.outbox import run_relay

        run_relay(settings)
    elif process == Process.compactor:
        from accessa.segments import run_compactor

        run_compactor(settings)
    elif process == Process.mocks:
        import asyncio

        from mocks.serve import serve_mocks

        asyncio.run(serve_mocks(settings))
    else:
        from accessa.runtime.server import run_stage

        module = importlib.import_module(f"consumers.{process.value}.app")
        run_stage(module.stage, settings)


def _pump(name: str, stream: IO[bytes]) -> None:
    prefix = Text(f"{name:>9} | ", style=_COLORS.get(name, "white"))
    for line in iter(stream.readline, b""):
        console.print(prefix + Text(line.decode(errors="replace").rstrip()), highlight=False)


def child_env(base_port: int | None = None) -> dict[str, str]:
    """The environment of `run all`'s children: one ACCESSA_HEALTH_PORT would be every
    stage's, so it is dropped; each stage takes ACCESSA_HEALTH_BASE_PORT + its offset."""
    env = {**os.environ, "ACCESSA_LOG_JSON": os.environ.get("ACCESSA_LOG_JSON", "false")}
    env.pop("ACCESSA_HEALTH_PORT", None)
    if base_port is not None:
        env["ACCESSA_HEALTH_BASE_PORT"] = str(base_port)
    return env


def run_children(names: list[str], env: dict[str, str] | None = None) -> int:
    """Start each process as a child with prefixed logs; Ctrl-C/SIGTERM stops them all."""
    env = env if env is not None else child_env()
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        proc = subprocess.Popen(
            [sys.executable, "-m", "accessa.cli.main", "run", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        children[name] = proc
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(name, proc.stdout), daemon=True).start()

    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    console.print(f"[bold]running {', '.join(names)}[/bold] — Ctrl-C stops everything")
    while not stopping.is_set():
        if any(p.poll() is not None for p in children.values()):
            dead = [n for n, p in children.items() if p.poll() is not None]
            console.print(f"[red]{', '.join(dead)} exited; stopping the rest[/red]")
            break
        stopping.wait(1.0)
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    grace = get_settings().shutdown_grace_s + 5
    codes = []
    for proc in children.values():
        try:
            codes.append(proc.wait(grace))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return 0 if stopping.is_set() else 1
