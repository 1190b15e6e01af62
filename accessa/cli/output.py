"""Output helpers: every command prints Rich for people or JSON with `--json`."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class Exit(IntEnum):
    """Exit codes that mean something to scripts."""

    OK = 0
    FAILED = 1  # the operation failed (a job failed, a command errored)
    USAGE = 2  # bad arguments (Typer's own code)
    UNHEALTHY = 3  # a component is down / not ready
    NOT_FOUND = 4


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def fail(message: str, code: Exit = Exit.FAILED, *, as_json: bool = False) -> NoReturn:
    if as_json:
        emit_json({"error": message})
    else:
        err_console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(int(code))
