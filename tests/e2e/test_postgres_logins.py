"""Each pipeline process reaches Postgres as its own login (issue 19), told apart by the local
ports of its connections in pg_stat_activity."""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil
import pytest

from accessa import db
from accessa.config import Settings
from accessa.ops.localrun import LocalPipeline

pytestmark = [pytest.mark.e2e]


async def test_every_pipeline_process_logs_in_as_its_own_role(
    infra: Settings, pipeline: LocalPipeline
) -> None:
    port = urlsplit(infra.dsn).port
    ports = {
        name: {c.laddr.port for c in psutil.Process(proc.pid).net_connections("tcp")
               if c.raddr and c.raddr.port == port}
        for name, proc in pipeline.procs.items() if name != "mocks"
    }  # fmt: skip
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
        assert {users[p] for p in own if p in users} == {(f"accessa_{name}", False)}, name
