"""`accessa infra up|down|status|topics` and `accessa migrate`."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

import typer
from rich.table import Table

from accessa.cli.output import Exit, console, emit_json, fail
from accessa.config import Settings, get_settings
from accessa.devstack import acls, kafka, postgres
from accessa.devstack.kafka import ComponentStatus, LocalKafka
from accessa.devstack.postgres import LocalPostgres
from accessa.topics import ensure_topics

app = typer.Typer(help="Local infrastructure: the embedded Kafka broker and Postgres.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _with_overrides(s: Settings, secure: bool | None, brokers: int | None) -> Settings:
    update: dict[str, object] = {}
    if secure is not None:
        update["kafka_secure"] = secure
    if brokers is not None:
        update["kafka_brokers"] = brokers
    return s.model_copy(update=update) if update else s


def component_statuses() -> list[ComponentStatus]:
    s = get_settings()
    pg = (
        LocalPostgres(s).status()
        if s.embedded_postgres
        else asyncio.run(postgres.external_status(s))
    )
    kf = LocalKafka(s).status() if s.embedded_kafka else asyncio.run(kafka.external_status(s))
    return [pg, kf]


@app.command()
def up(
    secure: Annotated[
        bool | None,
        typer.Option(
            "--secure/--plaintext",
            help="Kafka on SASL_SSL with a local CA, SCRAM users and ACLs "
            "(= ACCESSA_KAFKA_SECURE; export it for the other commands too).",
        ),
    ] = None,
    brokers: Annotated[
        int | None,
        typer.Option(min=1, max=5, help="KRaft nodes (= ACCESSA_KAFKA_BROKERS; 3 = RF 3)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start what is not running (idempotent), create topics. External services are untouched."""
    s = _with_overrides(get_settings(), secure, brokers)
    started = {}
    with console.status("starting infrastructure…", spinner="dots") if not as_json else _null():
        try:
            if s.embedded_postgres:
                started["postgres"] = LocalPostgres(s).up()
            if s.embedded_kafka:
                started["kafka"] = LocalKafka(s).up()
            topics = asyncio.run(ensure_topics(s))
            if s.embedded_kafka and s.kafka_secure:
                asyncio.run(acls.grant(s, acls.pipeline_acls(s)))
        except Exception as exc:
            fail(f"infra up failed: {exc}", Exit.UNHEALTHY, as_json=as_json)
    if as_json:
        emit_json({"started": started, "topics": topics})
        return
    for name, was_started in started.items():
        console.print(f"{name}: {'started' if was_started else 'already running'}")
    console.print(f"topics: {len(topics)} ready ({s.topic_partitions} partitions each)")


@app.command()
def down(
    purge: Annotated[bool, typer.Option(help="Also delete data and logs.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop only what `up` started (by pid); keep data unless --purge."""
    s = get_settings()
    stopped = {}
    if s.embedded_kafka:
        stopped["kafka"] = LocalKafka(s).down(purge=purge)
    if s.embedded_postgres:
        stopped["postgres"] = LocalPostgres(s).down(purge=purge)
    if as_json:
        emit_json({"stopped": stopped, "purged": purge})
        return
    for name, was_stopped in stopped.items():
        console.print(f"{name}: {'stopped' if was_stopped else 'was not running'}")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Each component's version, address and health. Exit 3 if any is unhealthy."""
    s = get_settings()
    comps = component_statuses()
    healthy = all(c.healthy for c in comps)
    if as_json:
        emit_json(
            {
                "healthy": healthy,
                "bootstrap_servers": s.bootstrap_servers,
                "database_url": _redact(s.dsn),
                "components": [dataclasses.asdict(c) for c in comps],
            }
        )
    else:
        table = Table("component", "managed", "health", "version", "address", "pid", "log")
        for c in comps:
            health = "[green]healthy[/green]" if c.healthy else "[red]down[/red]"
            table.add_row(
                c.name,
                "local" if c.managed else "external",
                health,
                c.version or "-",
                c.address,
                str(c.pid or "-"),
                c.detail,
            )
        console.print(table)
    if not healthy:
        raise typer.Exit(int(Exit.UNHEALTHY))


@app.command()
def topics(as_json: JsonOpt = False) -> None:
    """Create missing pipeline topics (also for external Kafka) and list them."""
    counts = asyncio.run(ensure_topics(get_settings()))
    if as_json:
        emit_json(counts)
    else:
        for name in sorted(counts):
            console.print(f"{name}: {counts[name]} partitions")


def migrate_command(as_json: JsonOpt = False) -> None:
    """Apply pending SQL migrations in order (idempotent)."""
    from accessa.migrate import migrate

    try:
        applied = asyncio.run(migrate(get_settings()))
    except Exception as exc:
        fail(f"migration failed: {exc}", as_json=as_json)
    if as_json:
        emit_json({"applied": applied})
    else:
        console.print(f"applied: {', '.join(applied)}" if applied else "database is up to date")


def _redact(dsn: str) -> str:
    """Hide a password in a URL: secrets are never printed."""
    if "@" not in dsn or ":" not in dsn.split("@")[0].split("//")[-1]:
        return dsn
    head, tail = dsn.split("@", 1)
    scheme, creds = head.split("//", 1)
    return f"{scheme}//{creds.split(':')[0]}:***@{tail}"


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None
