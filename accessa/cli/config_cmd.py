"""`accessa config`: the effective settings, secrets redacted."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.table import Table

from accessa.cli.output import console, emit_json
from accessa.config import Settings, get_settings
from accessa.logs import redact


def settings_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per setting: env name, current value (secrets as ***), default, description."""
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        default = field.default
        if isinstance(value, SecretStr):
            value, default = "***", "***"
        elif isinstance(value, str):  # ACCESSA_DATABASE_URL and other URLs with a password
            value = redact(value)
        rows.append(
            {
                "env": f"ACCESSA_{name.upper()}",
                "value": value,
                "default": default,
                "description": field.description or "",
            }
        )
    return rows


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| Setting | Default | Description |", "|---|---|---|"]
    for row in settings_rows(Settings()):
        default = "unset" if row["default"] is None else f"`{row['default']}`"
        lines.append(f"| `{row['env']}` | {default} | {row['description']} |")
    return "\n".join(lines)


def config(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    markdown: Annotated[bool, typer.Option(help="Print the README settings table.")] = False,
) -> None:
    """Show every setting (env var, effective value, description); secrets are never shown."""
    if markdown:
        typer.echo(markdown_table())
        return
    rows = settings_rows(get_settings())
    if as_json:
        emit_json(rows)
        return
    table = Table("setting", "value", "description")
    for row in rows:
        table.add_row(row["env"], str(row["value"]), row["description"])
    console.print(table)


def asyncapi(
    output: Annotated[
        str | None, typer.Option(help="Write to this file instead of stdout.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (the only format).")] = True,
) -> None:
    """Export the AsyncAPI 3 document of the topics and event schemas."""
    import json
    from importlib.metadata import version

    from accessa.asyncapi import document

    text = json.dumps(document(version("accessa-ingest")), indent=2, sort_keys=True) + "\n"
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        typer.echo(text, nl=False)
