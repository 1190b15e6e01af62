"""The CLI's promise for an unreachable or refusing component: exit 3 and one readable line,
never a traceback, whatever command ran into it."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

import asyncpg
import httpx
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from accessa.cli.output import Exit, emit_json, err_console
from accessa.errors import ConfigurationError

# The errors that mean "cannot talk to Postgres" (its other errors are the command's own).
_POSTGRES_UNREACHABLE = (
    ConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.ConnectionDoesNotExistError,
)


def describe(exc: BaseException) -> str | None:
    """One line for an infrastructure failure, or None when `exc` is something else."""
    from accessa import kafka_clients
    from accessa.config import get_settings

    if isinstance(exc, ConfigurationError):
        return exc.message
    if isinstance(exc, ValidationError) and exc.title == "Settings":  # inputs hidden: config.py
        reasons = (e["msg"].removeprefix("Value error, ") for e in exc.errors())
        return "settings: " + "; ".join(reasons)
    if isinstance(exc, KafkaError):
        settings = get_settings()
        reason = asyncio.run(kafka_clients.diagnose(settings)) or kafka_clients.explain(exc)
        return f"Kafka at {settings.bootstrap_servers}: {reason}"
    if isinstance(exc, httpx.TransportError):
        url = get_settings().api_url
        return f"the API at {url} is not reachable ({type(exc).__name__}) — is `make run` up?"
    if isinstance(exc, _POSTGRES_UNREACHABLE):
        from accessa.db import describe_error

        return f"postgres: {describe_error(exc)}"
    return None


def guarded(app: Callable[[], object]) -> Callable[[], None]:
    """`app` as a console entry point that turns infrastructure failures into exit 3."""

    def main() -> None:
        if sys.argv[1:2] != ["run"]:
            # aiokafka logs each failed connect; the CLI says why in one line instead.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        try:
            app()
        except Exception as exc:
            line = describe(exc)
            if line is None:
                raise
            if "--json" in sys.argv:
                emit_json({"error": line})
            else:
                err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
            sys.exit(int(Exit.UNHEALTHY))

    return main
