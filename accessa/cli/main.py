"""The `accessa` command: the operator's interface. Every command has --help and --json."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib.metadata import version as pkg_version
from typing import Annotated

import typer

from accessa.cli import client, gc_cmd, infra, ops, reprocess_cmd, segments_cmd, storage_cmd
from accessa.cli.config_cmd import asyncapi, config
from accessa.cli.console_cmd import console_command
from accessa.cli.cost_cmd import cost
from accessa.cli.output import console, emit_json
from accessa.cli.run import run
from accessa.cli.status_cmd import status
from accessa.cli.unreachable import guarded
from accessa.config import get_settings

app = typer.Typer(
    name="accessa",
    help="Accessa Ingest: PDFs to searchable chunks through Kafka stages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(infra.app, name="infra")
app.command("migrate")(infra.migrate_command)
app.command("run")(run)
app.command("config")(config)
app.command("asyncapi")(asyncapi)
app.add_typer(ops.dlq_app, name="dlq")
app.add_typer(ops.consumers_app, name="consumers")
app.command("replay")(ops.replay)
app.add_typer(reprocess_cmd.app, name="reprocess")
app.add_typer(storage_cmd.app, name="storage")
app.add_typer(segments_cmd.app, name="segments")
app.command("gc")(gc_cmd.gc)
app.command("status")(status)
app.command("cost")(cost)
app.command("console")(console_command)
app.command("upload")(client.upload)
app.command("jobs")(client.jobs)
app.command("search")(client.search)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# The process (Settings.secrets_used) whose secrets a command uses, else `ops`; `token` (and
# `--user`) check the JWT secret where they mint (accessa/auth.py).
COMMAND_PROCESS = {"storage": "storage-gc", "segments": "compactor"}


def command_process(args: Sequence[str]) -> str | None:
    """The process `accessa <args>` runs as (`run <process>`: that one; None: not known yet)."""
    if args[:1] == ["run"]:
        return args[1] if len(args) > 1 else None
    return COMMAND_PROCESS.get(args[0] if args else "", "ops")


@app.callback()
def _production_guard(ctx: typer.Context) -> None:
    """In production, refuse an operator command whose secrets are defaults or placeholders."""
    # `run` checks its process itself (accessa/cli/run.py); `run all` each child its own.
    if (process := command_process([ctx.invoked_subcommand or ""])) is not None:
        get_settings().require_production_ready(process)  # exit 3, one line (unreachable.py)


@app.command()
def token(
    user: Annotated[uuid.UUID, typer.Option(help="User id (the `sub` claim).")],
    role: Annotated[str, typer.Option(help="`authenticated` or `service_role`.")] = "authenticated",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 86400,
    as_json: JsonOpt = False,
) -> None:
    """Mint a local development JWT (HS256 with the configured secret)."""
    from accessa.auth import mint_token

    tok = mint_token(get_settings(), user, role=role, ttl_s=ttl)
    if as_json:
        emit_json({"token": tok, "user_id": str(user), "role": role, "expires_in": ttl})
    else:
        typer.echo(tok)


@app.command()
def version(as_json: JsonOpt = False) -> None:
    """Print the version of Accessa Ingest and its infrastructure."""
    from accessa.devstack.kafka_jars import kafka_version
    from accessa.devstack.postgres import postgres_version

    info = {
        "accessa": pkg_version("accessa-ingest"),
        "kafka": kafka_version(),
        "postgres": postgres_version(),
    }
    if as_json:
        emit_json(info)
    else:
        for key, value in info.items():
            console.print(f"{key}: {value or 'not installed'}")


main = guarded(app)  # the `accessa` entry point: exit 3 and one line when infra refuses

if __name__ == "__main__":
    main()
