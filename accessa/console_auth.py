"""Console login: one-time tokens (`accessa console`) traded for a session with a CSRF token.

Only SHA-256 digests of the random values are stored, so the tables leak nothing usable. A
token is spent by the UPDATE that marks it used, so two requests racing with it get one
session between them."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

OPS_ROLE = "ops"


@dataclass(frozen=True)
class ConsoleSession:
    operator: str
    role: str
    csrf: str


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def issue_login_token(
    conn: asyncpg.Pool | asyncpg.Connection, *, operator: str, ttl_s: int, role: str = OPS_ROLE
) -> str:
    """A fresh single-use login token for `operator`, valid for `ttl_s` seconds."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO console_tokens (token_sha256, operator, role, expires_at)
           VALUES ($1, $2, $3, now() + make_interval(secs => $4))""",
        digest(token),
        operator,
        role,
        float(ttl_s),
    )
    return token


async def redeem_login_token(
    pool: asyncpg.Pool, token: str, *, session_ttl_s: int
) -> tuple[str, ConsoleSession] | None:
    """Spend `token`: (session cookie value, session), or None if unknown, used or expired."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE console_tokens SET used_at = now()
               WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > now()
               RETURNING operator, role""",
            digest(token),
        )
        if row is None:
            return None
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        await conn.execute(
            """INSERT INTO console_sessions (session_sha256, operator, role, csrf, expires_at)
               VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))""",
            digest(cookie),
            row["operator"],
            row["role"],
            csrf,
            float(session_ttl_s),
        )
        await conn.execute(
            "DELETE FROM console_tokens WHERE expires_at < now() - interval '1 day'"
        )  # spent and lapsed tokens go, a day on, as new ones are redeemed
    return cookie, ConsoleSession(row["operator"], row["role"], csrf)


async def session(pool: asyncpg.Pool, cookie: str) -> ConsoleSession | None:
    row = await pool.fetchrow(
        """SELECT operator, role, csrf FROM console_sessions
           WHERE session_sha256 = $1 AND expires_at > now()""",
        digest(cookie),
    )
    return ConsoleSession(row["operator"], row["role"], row["csrf"]) if row else None
