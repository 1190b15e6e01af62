"""`accessa console`: a one-time login link to the operator's console (`accessa run console`)."""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer

from accessa.cli.output import Exit, emit_json, fail
from accessa.config import get_settings
from accessa.console_auth import issue_login_token
from accessa.db import create_pool, describe_error


async def _login_url(operator: str) -> str:
    settings = get_settings()
    pool = await create_pool(settings, process="ops", min_size=1, max_size=1)
    try:
        token = await issue_login_token(pool, operator=operator, ttl_s=settings.console_token_ttl_s)
    finally:
        await pool.close()
    return f"{settings.console_url.rstrip('/')}/console/login?token={token}"


def console_command(
    operator: Annotated[
        str | None, typer.Option(help="Name recorded on every action (default: your login).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print a link that signs you in to the web console (pipeline, jobs, DLQ, cost) once.

    The link works one time, within ACCESSA_CONSOLE_TOKEN_TTL_S, on ACCESSA_CONSOLE_URL; the
    console is its own process with the ops identity (`accessa run console`, part of `accessa
    run all`). Exit 3 if Postgres cannot be reached."""
    who = operator or getpass.getuser()
    try:
        url = asyncio.run(_login_url(who))
    except Exception as exc:
        fail(
            f"cannot create a console login: {describe_error(exc)}", Exit.UNHEALTHY, as_json=as_json
        )
    if as_json:
        emit_json({"url": url, "operator": who, "expires_in": get_settings().console_token_ttl_s})
    else:
        typer.echo(f"Open the console (one use, {get_settings().console_token_ttl_s} s):\n{url}")
