"""Each pipeline process reaches Postgres as its own login (issue 19), the console as ops (issue
22), told apart by the local ports of their connections in pg_stat_activity."""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil
import pytest

from accessa import db
from accessa.config import Settings
from accessa.ops.localrun import CONSOLE, DB_LOGINS, LocalPipeline

pytestmark = [pytest.mark.e2e]


async def _logins(infra: Settings, pipeline: LocalPipeline) -> dict[str, set[tuple[str, bool]]]:
    """Each running process (not the mocks): the (login, superuser) of its Postgres sessions."""
    port = urlsplit(infra.dsn).port
    ports = {
        name: {
            c.laddr.port
            for c in psutil.Process(proc.pid).net_connections("tcp")
            if c.raddr and c.raddr.port == port
        }
        for name, proc in pipeline.procs.items()
        if name != "mocks"
    }
    conn = await db.connect(infra.dsn)  # the bootstrap superuser sees every session's port
    try:
        rows = await conn.fetch(
            "SELECT a.client_port, a.usename, r.rolsuper FROM pg_stat_activity a"
            " JOIN pg_roles r ON r.oid = a.usesysid WHERE a.client_port = ANY($1::int[])",
            sorted(set().union(*ports.values())),
        )
    finally:
        await conn.close()
    users = {r["client_port"]: (r["usename"], r["rolsuper"]) for r in rows}
    for name, own in ports.items():
        assert own, f"{name} holds no connection to Postgres"
    return {name: {users[p] for p in own if p in users} for name, own in ports.items()}


async def test_every_pipeline_process_logs_in_as_its_own_role(
    infra: Settings, pipeline: LocalPipeline
) -> None:
    for name, logins in (await _logins(infra, pipeline)).items():
        process = name.split("#")[0]
        assert logins == {(f"accessa_{DB_LOGINS.get(process, process)}", False)}, name


async def test_the_console_logs_in_as_ops_not_as_the_api(
    infra: Settings, pipeline: LocalPipeline, console: str
) -> None:
    logins = await _logins(infra, pipeline)
    assert logins[CONSOLE] == {("accessa_ops", False)}
    assert logins["api"] == {("accessa_api", False)}
