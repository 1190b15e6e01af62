"""The pipeline over TLS to Postgres: every process (and this test's own checks) reaches the
shared Postgres through PgBouncer, which requires TLS from clients (a certificate from a local
CA; clients on sslmode=verify-full) and forwards plaintext on loopback. The embedded Postgres
itself is built without TLS, so this is the nearest real thing to a TLS Postgres with pgvector.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from accessa import db, kafka_clients, migrate
from accessa.config import Settings
from accessa.devstack import pgbouncer
from accessa.devstack.tls import create_ca
from accessa.ops.localrun import LocalPipeline
from tests.e2e.ledger import Batch
from tests.utils import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLE = "accessa_tls"  # carries the search path PgBouncer 1.18 drops (accessa.devstack.pgbouncer)
STAGES = ("api", "parser", "chunker", "embedder", "finalizer")


@pytest.fixture(scope="module")
def bouncer(infra: Settings) -> Iterator[pgbouncer.PgBouncer]:
    """PgBouncer with client TLS in front of the shared Postgres."""
    if not infra.embedded_postgres:
        pytest.skip("needs the embedded Postgres (its superuser) behind PgBouncer")
    if pgbouncer.ensure_installed() is None:
        pytest.skip("pgbouncer is not installed and cannot be (apt-get install pgbouncer as root)")
    server = urlsplit(infra.dsn)
    password = secrets.token_urlsafe(16)  # the server asks every login for its password
    asyncio.run(pgbouncer.prepare_role(infra.dsn, ROLE, password))
    # Under /tmp, not pytest's private tmp: PgBouncer runs as another user when we are root.
    folder = Path(tempfile.mkdtemp(prefix="accessa-pgbouncer-"))
    passwords = {ROLE: password, "postgres": server.password or ""}
    running = pgbouncer.start(
        folder,
        server.port or 5432,
        server_host=server.hostname or "",
        users=(ROLE,),
        passwords=passwords,
    )
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _tls_pipeline(infra: Settings, home: Path, url: str) -> LocalPipeline:
    settings = kafka_clients.pinned(infra).model_copy(update={"database_url": url})
    pipe = LocalPipeline.create(settings, home, ACCESSA_RETRY_BASE_DELAY_S="1")
    assert pipe.env["ACCESSA_DATABASE_URL"] == url  # what every child process is given
    return pipe


def _local_ports_to(pid: int, port: int) -> set[int]:
    """The local ports of `pid`'s TCP connections to 127.0.0.1:`port`."""
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections("tcp")
        if c.raddr and c.raddr.port == port
    }


def test_the_pipeline_runs_end_to_end_over_verify_full_tls_through_pgbouncer(
    infra: Settings, bouncer: pgbouncer.PgBouncer, tmp_path: Path
) -> None:
    pipe = _tls_pipeline(infra, tmp_path, bouncer.url(ROLE))
    postgres_port = urlsplit(infra.dsn).port
    try:
        pipe.start_all()
        batch = Batch.make(pipe, 3)

        async def run() -> None:
            await batch.upload()
            await batch.wait_finished()

        asyncio.run(run())
        audit = asyncio.run(batch.audit())
        # Each process's open connections, matched to what PgBouncer says of its clients.
        clients = {int(c["port"]): c for c in bouncer.show_clients() if c["user"] == ROLE}
        via = {name: _local_ports_to(pipe.procs[name].pid, bouncer.port) for name in STAGES}
        direct = {n: _local_ports_to(pipe.procs[n].pid, postgres_port or 0) for n in STAGES}
    finally:
        pipe.stop_all()

    assert audit.problems == [] and audit.complete == 3, audit
    assert all(via.values()), f"a process has no connection through PgBouncer: {via}"
    assert not any(direct.values()), f"connections around PgBouncer: {direct}"
    for name, ports in via.items():
        for port in ports:
            assert clients[port]["tls"].startswith("TLSv1."), (name, clients[port])
    # Every client login while the pipeline ran, short-lived ones included, was over TLS.
    logins = [tls for _, user, tls in bouncer.logins() if user == ROLE]
    assert len(logins) >= len(STAGES)
    assert all(tls.startswith("TLSv1.") for tls in logins), set(logins)


async def test_migrations_run_over_verify_full_tls_on_a_fresh_database(
    infra: Settings, bouncer: pgbouncer.PgBouncer
) -> None:
    name = f"accessa_tls_{uuid.uuid4().hex[:8]}"
    admin = await db.connect(infra.dsn, database="postgres")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        # As `postgres` (no role search path), as `accessa migrate` runs; the pool as ROLE.
        migrator = infra.model_copy(update={"database_url": bouncer.url("postgres", name)})
        applied = await migrate.migrate(migrator)
        assert applied == [m for m, _ in migrate.migration_files()]
        app = infra.model_copy(update={"database_url": bouncer.url(ROLE, name)})
        pool = await db.create_pool(app, min_size=1, max_size=2)
        try:
            assert await pool.fetchval("SELECT count(*) FROM documents") == 0
            assert await pool.fetchval("SELECT '[1,2]'::vector") is not None  # pgvector
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
    logins = [tls for database, _, tls in bouncer.logins() if database == name]
    assert logins and all(tls.startswith("TLSv1.") for tls in logins)


def _postgres_reason(url: str, expected: str) -> Callable[[], Awaitable[dict | None]]:
    async def poll() -> dict | None:
        async with httpx.AsyncClient(timeout=3) as client:
            try:
                r = await client.get(url)
            except httpx.HTTPError:
                return None
        body = r.json()
        return body if expected in body.get("reasons", {}).get("postgres", "") else None

    return poll


def test_a_wrong_ca_leaves_the_api_and_a_stage_up_not_ready_with_the_reason_until_it_is_right(
    infra: Settings, bouncer: pgbouncer.PgBouncer, tmp_path: Path
) -> None:
    # A CA that did not sign PgBouncer's certificate, in a file that is later set right.
    ca = tmp_path / "ca.crt"
    shutil.copy(create_ca(tmp_path / "other-ca", "Someone else's CA").cert, ca)
    wrong = bouncer.url(ROLE, ca=ca)
    pipe = _tls_pipeline(infra, tmp_path, wrong)
    try:
        pipe.start("api")
        pipe.start("chunker", ACCESSA_DATABASE_URL=wrong)
        for name in ("api", "chunker"):
            body = asyncio.run(
                wait_for(
                    _postgres_reason(pipe.health[name], "certificate"),
                    timeout=60,
                    what=f"{name} not ready",
                )
            )
            assert body["ready"] is False and body["checks"]["postgres"] is False
            assert body["reasons"]["postgres"] == (
                "certificate verify failed (unable to get local issuer certificate)"
            )
            assert httpx.get(pipe.health[name], timeout=3).status_code == 503
            assert pipe.procs[name].poll() is None  # up, not crash-looping

        # The right CA in that file: each process's next try gets its pool and it is ready.
        shutil.copy(bouncer.ca.cert, ca)
        pipe.wait_ready(("api", "chunker"), timeout=90)
    finally:
        pipe.stop_all()
    log = (tmp_path / "chunker.log").read_text()
    assert "certificate verify failed" in log and "next try in 1 s" in log
