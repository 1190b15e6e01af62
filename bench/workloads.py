"""The documents an end-to-end benchmark uploads, and Postgres commits per document.

Two workloads. *Copies*: each of N users uploads every corpus file, so the copies differ in
bytes (one user each) but not in text; the embedding cache and HNSW's folding of duplicate
vectors then hide the index's cost. *Distinct*: generated policies (`mocks/policy_pdf.py`),
one seed per document, whose text all differs (tests/unit/test_bench_workloads.py checks it
at the chunk level), so every chunk is embedded and indexed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mocks.policy_pdf import make_policy_pdf

# (user index, filename, PDF file): the user index picks one of a run's users.
Upload = tuple[int, str, Path]

# Seeds of the distinct workload start here (the tests and `make eval` use small seeds).
FIRST_SEED = 1_000_000


def policy_pages(index: int) -> int:
    """3..10 pages, cycling: 6.5 on average, as the corpus's 159 pages over 24 files."""
    return 3 + index % 8


def copies(files: Iterable[Path], users: int) -> list[Upload]:
    """Every file once per user."""
    files = list(files)
    return [(u, p.name, p) for u in range(users) for p in files]


def _write_policy(job: tuple[int, int, Path]) -> None:
    seed, pages, path = job
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(make_policy_pdf(seed=seed, pages=pages))
    tmp.replace(path)  # a killed run leaves no half-written file under the final name


def distinct(cache: Path, n: int, users: int, block: int = 0) -> list[Upload]:
    """`n` generated policies, seeds `FIRST_SEED + block * 100_000 + i`, the i-th of
    `policy_pages(i)` pages, spread round-robin over `users` users. Each (side, round) of a
    comparison takes its own `block`, so no side indexes a text another side already stored
    (same page mix, different text). Files are generated once into `cache` (the same seed
    gives the same bytes), two processes at a time: about 50 ms a document here."""
    if not 0 <= n <= 100_000:
        raise ValueError(f"n must be between 0 and 100000, not {n}")
    cache.mkdir(parents=True, exist_ok=True)
    plan = []
    for i in range(n):
        seed = FIRST_SEED + block * 100_000 + i
        plan.append((seed, policy_pages(i), cache / f"policy-{seed}-{policy_pages(i)}.pdf"))
    missing = [job for job in plan if not job[2].exists()]
    if missing:
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_write_policy, missing, chunksize=8))
    return [(i % users, path.name, path) for i, (_, _, path) in enumerate(plan)]


def read_all(uploads: list[Upload]) -> dict[Path, bytes]:
    """Each distinct file's bytes, read once."""
    return {path: path.read_bytes() for path in {u[2] for u in uploads}}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Write transactions: the next transaction id to be assigned (xmax of a fresh snapshot).
# All transactions: the database's committed ones (read-only too), from the statistics, which
# a backend flushes at most once a second and, once idle, within 10 s (PGSTAT_IDLE_INTERVAL).
COUNTERS = (
    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid, "
    "(SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()) AS commits"
)
STATS_FLUSH_S = 11.0


async def commit_counters(pool: Any) -> dict[str, int]:
    row = await pool.fetchrow(COUNTERS)
    return {"xid": int(row["xid"]), "commits": int(row["commits"])}


def commits_per_document(
    before: dict[str, int], after: dict[str, int], documents: int, own_queries: int
) -> dict[str, Any]:
    """Write transactions and all committed transactions per completed document, between two
    `commit_counters` snapshots; `own_queries` (the benchmark's own polling, each one
    transaction, plus the first snapshot) are taken out of the committed count."""
    writes = after["xid"] - before["xid"]
    commits = after["commits"] - before["commits"] - own_queries
    return {
        "write_transactions": writes,
        "transactions": commits,
        "write_transactions_per_document": round(writes / documents, 2) if documents else None,
        "transactions_per_document": round(commits / documents, 2) if documents else None,
        "goal": "<= 5 commits per document (issue 20 item 1)",
    }
