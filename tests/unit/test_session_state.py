"""Pooled connections are released without asyncpg's reset query (accessa.db._keep_session):
that is safe only while no code gives a pooled connection session state. These checks fail
when a change does (a session-wide SET or set_config, LISTEN, a session advisory lock)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for d in ("accessa", "consumers", "producer_api") for p in (ROOT / d).rglob("*.py")]
# Code that holds its own connection outside the pool (accessa.db.connect, asyncpg.connect),
# and the embedder's document lock, which unlocks in `finally` and, if it cannot, closes the
# connection instead of returning it (tests/unit/test_embedder_lock.py).
OWN_CONNECTION = {"accessa/db.py", "accessa/migrate.py", "accessa/providers/llamaparse_jobs.py"}
SESSION_LOCK_GUARDED = {"consumers/embedder/vectors.py"}


def test_every_set_in_the_code_is_transaction_local() -> None:
    offenders = []
    for path in SOURCES:
        for line in path.read_text().splitlines():
            # `UPDATE t SET` and `ALTER ROLE r SET` (a role's default) are not session state.
            if re.search(r"[\"'(]\s*SET\s+(?!LOCAL\b)", line) and not re.search(
                r"UPDATE|ALTER ROLE", line
            ):
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []


def test_set_config_is_only_ever_transaction_local() -> None:
    calls = [
        (path, m.group(0))
        for path in SOURCES
        for m in re.finditer(r"set_config\([^)]*\)", path.read_text())
    ]
    assert calls, "the RLS user id is set with set_config somewhere"
    assert [c for c in calls if not c[1].replace(" ", "").endswith(",true)")] == []


def test_listen_and_session_advisory_locks_use_their_own_connection() -> None:
    pattern = re.compile(r"[\"']LISTEN\b|add_listener\(|advisory_(?!xact_)\w*lock\(")
    users = {str(p.relative_to(ROOT)) for p in SOURCES if pattern.search(p.read_text())}
    allowed = OWN_CONNECTION | SESSION_LOCK_GUARDED
    assert users <= allowed, users - allowed
