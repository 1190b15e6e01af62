"""Postgres schema: the embedded server's roles and logins, and the packaged migrations."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import secrets
from importlib import resources

import asyncpg

from accessa.config import POSTGRES_LOGINS, Settings
from accessa.db import connect

_MIGRATION_LOCK = 0x0ACCE55A  # advisory lock id: one migrator at a time


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every packaged migration, in order."""
    folder = resources.files("accessa") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name, p.read_text()) for p in files]


OWNER = "accessa_owner"  # owns the schema; migrations run as this role

# Hands every object of the schema (and the migrations table) to accessa_owner; the same block
# is in migration 0017, for a server whose migrations ran as another login.
_ADOPT = """DO $$
DECLARE obj record;
BEGIN
  IF to_regnamespace('upload_pipeline') IS NOT NULL THEN
    EXECUTE 'ALTER SCHEMA upload_pipeline OWNER TO accessa_owner';
    FOR obj IN SELECT c.oid::regclass AS name FROM pg_class c
               WHERE c.relnamespace = 'upload_pipeline'::regnamespace
                 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') LOOP
      EXECUTE format('ALTER TABLE %s OWNER TO accessa_owner', obj.name);
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS name FROM pg_proc p
               WHERE p.pronamespace = 'upload_pipeline'::regnamespace LOOP
      EXECUTE format('ALTER ROUTINE %s OWNER TO accessa_owner', obj.name);
    END LOOP;
  END IF;
  IF to_regclass('public.accessa_migrations') IS NOT NULL THEN
    EXECUTE 'ALTER TABLE public.accessa_migrations OWNER TO accessa_owner';
  END IF;
END $$"""


def _credentials(settings: Settings) -> dict[str, str]:
    """The embedded server's password of each login, generated once (mode 0600)."""
    path = settings.postgres_credentials_file
    try:
        passwords: dict[str, str] = json.loads(path.read_text())
    except FileNotFoundError:
        passwords = {}
    wanted = ["postgres", *(f"accessa_{name}" for name in POSTGRES_LOGINS)]
    if any(user not in passwords for user in wanted):
        for user in wanted:
            passwords.setdefault(user, secrets.token_urlsafe(24))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(passwords, indent=2))
        tmp.replace(path)
    return passwords


async def bootstrap(settings: Settings) -> None:
    """Embedded default only, as the superuser: the database, pgvector, accessa_owner, and one
    LOGIN role per process (accessa_api, ..., accessa_ops, accessa_migrator) with its generated
    password, none superuser or BYPASSRLS. Their grants come from migration 0017. On an
    external server the operator does this part (README, Postgres roles)."""
    if not settings.embedded_postgres:
        return
    lock = settings.postgres_credentials_file.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as held:
        # One bootstrap at a time per server (test sessions start side by side): the file's
        # passwords and the roles' stay the same.
        await asyncio.to_thread(fcntl.flock, held, fcntl.LOCK_EX)
        await _bootstrap(settings, _credentials(settings))


async def ensure_database(settings: Settings) -> None:
    """The embedded default database (and its logins) if they do not exist yet."""
    await bootstrap(settings)


async def _bootstrap(settings: Settings, passwords: dict[str, str]) -> None:
    conn = await connect(settings.dsn, database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'accessa'")
        if not exists:
            await conn.execute("CREATE DATABASE accessa")
        for role in (OWNER, "accessa_app"):
            await conn.execute(
                f"""DO $$ BEGIN CREATE ROLE {role} NOLOGIN;
                    EXCEPTION WHEN duplicate_object THEN NULL; END $$"""
            )
        # CREATEROLE: migrations create roles (0001's accessa_app, 0017's group roles); on
        # PG16+ that lets the owner administer only the roles it created, never a superuser.
        await conn.execute(f"ALTER ROLE {OWNER} NOLOGIN CREATEROLE")
        for name in POSTGRES_LOGINS:
            user = f"accessa_{name}"
            password = passwords[user]
            await conn.execute(
                f"""DO $$ BEGIN CREATE ROLE {user};
                    EXCEPTION WHEN duplicate_object THEN NULL; END $$"""
            )
            sql = await conn.fetchval(
                "SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                "NOCREATEROLE PASSWORD %L', $1::text, $2::text)",
                user,
                password,
            )
            await conn.execute(sql)
        sql = await conn.fetchval(
            "SELECT format('ALTER ROLE postgres PASSWORD %L', $1::text)", passwords["postgres"]
        )
        await conn.execute(sql)  # the bootstrap's own, once pg_hba asks for passwords
        # The owner may hand accessa_app to the process roles (0017's GRANT accessa_app TO).
        await conn.execute(f"GRANT accessa_app TO {OWNER} WITH ADMIN OPTION")
        await conn.execute(f"GRANT {OWNER} TO accessa_migrator")
        await conn.execute("ALTER DATABASE accessa OWNER TO accessa_owner")
    finally:
        await conn.close()
    conn = await connect(settings.dsn)
    try:
        # Not a trusted extension: the owner could not create it (0001 says if it is missing).
        if await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"):
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(_ADOPT)
    finally:
        await conn.close()


async def migrator_connection(settings: Settings) -> asyncpg.Connection:
    """The migrator's connection, as accessa_owner when the login is a member of it and not a
    superuser (a superuser runs as itself: before the owner exists, or on a fresh database).
    The role is a startup parameter: it holds for this connection's life."""
    dsn = settings.dsn_for("migrator")
    conn = await connect(dsn)
    try:
        member = await conn.fetchval(
            """SELECT NOT r.rolsuper AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                      AND pg_has_role(session_user, $1, 'MEMBER')
               FROM pg_roles r WHERE r.rolname = session_user""",
            OWNER,
        )
    finally:
        await conn.close()
    return await connect(dsn, server_settings={"role": OWNER}) if member else await connect(dsn)


async def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations in order; return the names applied (empty when up to date).
    Logs in as the migrator (the embedded `accessa_migrator`, else ACCESSA_DATABASE_URL) and
    runs them as accessa_owner."""
    await bootstrap(settings)
    conn = await migrator_connection(settings)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        if await conn.fetchval("SELECT to_regclass('public.accessa_migrations') IS NULL"):
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS public.accessa_migrations (
                     name text PRIMARY KEY, checksum text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch("SELECT name, checksum FROM public.accessa_migrations")
        }
        for name, sql in migration_files():
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if name in done:
                if done[name] != checksum:
                    raise RuntimeError(f"migration {name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO public.accessa_migrations (name, checksum) VALUES ($1, $2)",
                    name,
                    checksum,
                )
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied


async def applied_migrations(settings: Settings) -> list[str]:
    conn = await connect(settings.dsn)
    try:
        rows = await conn.fetch("SELECT name FROM public.accessa_migrations ORDER BY name")
        return [r["name"] for r in rows]
    finally:
        await conn.close()
