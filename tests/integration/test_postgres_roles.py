"""Least privilege in Postgres (issue 19): each process logs in as its own role, none of them
superuser or BYPASSRLS; grants limit each to its own tables, FORCE RLS keeps users apart, and
migrations run as the schema's owner."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from accessa import db, migrate
from accessa.config import POSTGRES_LOGINS, Settings

USER_TABLES = ("documents", "upload_jobs", "document_chunks", "events")


def _user(dsn: str) -> str:
    return urlsplit(dsn).username or ""


async def _insert_document(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID:
    document_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO upload_pipeline.documents
             (document_id, user_id, sha256, size, filename, raw_path)
           VALUES ($1, $2, $3, 1, 'roles.pdf', 'raw/roles.pdf')""",
        document_id,
        user_id,
        uuid.uuid4().hex * 2,
    )
    return document_id


async def test_no_runtime_login_is_superuser_or_bypasses_rls(infra: Settings) -> None:
    logins = {_user(infra.dsn_for(p)) for p in POSTGRES_LOGINS}
    assert "postgres" not in logins and len(logins) == len(POSTGRES_LOGINS)
    conn = await db.connect(infra.dsn_for("ops"))
    try:
        rows = await conn.fetch(
            "SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles"
            " WHERE rolname = ANY($1::text[])",
            sorted(logins),
        )
        for p in POSTGRES_LOGINS:  # each process is who it says
            own = await db.connect(infra.dsn_for(p))
            try:
                assert await own.fetchval("SELECT session_user") == f"accessa_{p}"
            finally:
                await own.close()
    finally:
        await conn.close()
    assert {r["rolname"] for r in rows} == logins
    assert [r["rolname"] for r in rows if r["rolsuper"] or r["rolbypassrls"]] == []
    assert all(r["rolcanlogin"] for r in rows)


@pytest.mark.parametrize("table", ["document_chunks", "embedding_cache", "outbox"])
async def test_the_parser_is_denied_tables_it_has_no_business_with(
    infra: Settings, table: str
) -> None:
    pool = await db.create_pool(infra, "parser", min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SELECT count(*) >= 0 FROM documents")  # its own: allowed
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.fetchval(f"SELECT count(*) FROM {table}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # nor acts as a user
            async with db.user_transaction(pool, uuid.uuid4()):
                pass
    finally:
        await pool.close()


async def test_a_stage_may_not_change_the_schema(infra: Settings) -> None:
    conn = await db.connect(infra.dsn_for("finalizer"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "ALTER TABLE upload_pipeline.document_chunks DISABLE ROW LEVEL SECURITY"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM upload_pipeline.documents")
    finally:
        await conn.close()


async def test_a_user_transaction_that_resets_its_role_sees_nothing_more(infra: Settings) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    ops = await db.connect(infra.dsn_for("ops"))
    pool = await db.create_pool(infra, "api", min_size=1, max_size=1)
    try:
        my_doc = await _insert_document(ops, mine)
        other_doc = await _insert_document(ops, other)
        async with db.user_transaction(pool, mine) as conn:
            assert await conn.fetchval("SELECT current_user") == "accessa_app"
            seen = {r[0] for r in await conn.fetch("SELECT document_id FROM documents")}
            assert my_doc in seen and other_doc not in seen
            await conn.execute("RESET ROLE")
            assert await conn.fetchval("SELECT current_user") == "accessa_api"
            after = {r[0] for r in await conn.fetch("SELECT document_id FROM documents")}
            assert after == seen
            n = "SELECT count(*) FROM upload_pipeline.{} WHERE user_id = $1"
            for table in USER_TABLES:
                assert await conn.fetchval(n.format(table), other) == 0, table
        # Outside a user transaction the API works across users (housekeeping, webhooks).
        assert (
            await pool.fetchval("SELECT count(*) FROM documents WHERE document_id = $1", other_doc)
            == 1
        )
    finally:
        await ops.execute(
            "DELETE FROM upload_pipeline.documents WHERE document_id = ANY($1)", [my_doc, other_doc]
        )
        await ops.close()
        await pool.close()


async def test_user_facing_tables_force_row_level_security(infra: Settings) -> None:
    conn = await db.connect(infra.dsn_for("ops"))
    try:
        rows = await conn.fetch(
            """SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
               WHERE relnamespace = 'upload_pipeline'::regnamespace AND relname = ANY($1)""",
            list(USER_TABLES),
        )
    finally:
        await conn.close()
    assert {r["relname"] for r in rows} == set(USER_TABLES)
    assert all(r["relrowsecurity"] and r["relforcerowsecurity"] for r in rows), rows


async def test_migrate_runs_as_the_migrator_and_the_owner_owns_everything(
    infra: Settings,
) -> None:
    assert _user(infra.dsn_for("migrator")) == "accessa_migrator"
    assert await migrate.migrate(infra) == []  # applied already, by the session, as the migrator
    conn = await migrate.migrator_connection(infra)
    try:
        assert await conn.fetchval("SELECT session_user") == "accessa_migrator"
        assert await conn.fetchval("SELECT current_user") == "accessa_owner"
        owners = await conn.fetch(
            """SELECT c.relname, c.relowner::regrole::text AS owner FROM pg_class c
               WHERE c.relnamespace = 'upload_pipeline'::regnamespace
                 AND c.relkind IN ('r', 'p', 'v', 'm')"""
        )
        schema = await conn.fetchval(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'upload_pipeline'"
        )
        functions = await conn.fetch(
            """SELECT proname, proowner::regrole::text AS owner FROM pg_proc
               WHERE pronamespace = 'upload_pipeline'::regnamespace"""
        )
        # The migrator's DDL, as the owner, goes through; the runtime logins' does not.
        async with conn.transaction():
            await conn.execute("CREATE TABLE upload_pipeline.roles_probe (x int)")
            made = await conn.fetchval(
                "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'roles_probe'"
            )
            await conn.execute("DROP TABLE upload_pipeline.roles_probe")
    finally:
        await conn.close()
    assert schema == "accessa_owner" and made == "accessa_owner"
    assert owners and {r["owner"] for r in owners} == {"accessa_owner"}, owners
    assert functions and {r["owner"] for r in functions} == {"accessa_owner"}, functions
    rows = await _logins(infra)
    assert rows["accessa_migrator"]["rolsuper"] is False


async def _logins(settings: Settings) -> dict[str, asyncpg.Record]:
    conn = await db.connect(settings.dsn_for("ops"))
    try:
        rows = await conn.fetch("SELECT * FROM pg_roles WHERE rolname LIKE 'accessa_%'")
    finally:
        await conn.close()
    return {r["rolname"]: r for r in rows}


async def test_a_login_cannot_connect_as_another_without_its_password(infra: Settings) -> None:
    if not infra.embedded_postgres:
        pytest.skip("the embedded server's pg_hba (an external server has its own)")
    parser = urlsplit(infra.dsn_for("parser"))
    address = f"{parser.hostname}:{parser.port}"

    def as_(netloc: str) -> str:
        return urlunsplit(parser._replace(netloc=f"{netloc}@{address}"))

    own = await db.connect(infra.dsn_for("parser"))
    await own.close()
    refused = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    for dsn in (
        as_(f"accessa_api:{parser.password}"),  # another login with the parser's password
        as_("accessa_ops"),  # no password
        as_("postgres"),  # nor the superuser
        as_("accessa_finalizer:wrong"),
    ):
        with pytest.raises(refused):
            conn = await db.connect(dsn, timeout=10)
            await conn.close()
