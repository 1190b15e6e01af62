"""Raw objects no live upload needs, found and deleted (`accessa storage gc`).

An object under `raw/` stays while a `documents` row names it (`raw_path`) and that
document's latest job is not an expired or abandoned two-step upload. Otherwise, once older
than the grace period (so an upload whose transaction has stored its bytes but not yet
committed its row is never taken), it goes, for one of three reasons:

- `orphan`: no row names it (a failed upload transaction, a deleted document, a PUT to a
  presigned URL after `complete` moved `raw_path` to the verified key);
- `expired`: its upload expired before its bytes were verified;
- `abandoned`: still waiting for its bytes past the URL's lifetime plus
  ACCESSA_UPLOAD_EXPIRY_GRACE_S (the API's housekeeping would expire it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from accessa.errors import ConfigurationError
from accessa.storage import RAW_PREFIX, ObjectInfo, Storage

# The latest job of each document that names one of the keys. `queued` is the stage of a job
# still waiting for its bytes (producer_api.crud.AWAITING_BYTES, a floor above this one).
_NAMED = """
SELECT d.raw_path, j.status,
       (j.stage = 'queued' AND j.status = 'uploaded' AND j.kind = 'upload'
        AND j.created_at < now() - make_interval(secs => $2)) AS abandoned
FROM documents d
LEFT JOIN LATERAL (
  SELECT status, stage, kind, created_at FROM upload_jobs u WHERE u.document_id = d.document_id
  ORDER BY created_at DESC, job_id DESC LIMIT 1) j ON true
WHERE d.raw_path = ANY($1::text[])"""

# Row-level security hides every document from a login without a policy: gc would then take
# every object for an orphan. It runs only where it sees all rows.
_SEES_ALL = """
SELECT NOT row_security_active('upload_pipeline.documents') OR EXISTS (
  SELECT 1 FROM pg_policies
  WHERE schemaname = 'upload_pipeline' AND tablename = 'documents' AND cmd IN ('SELECT', 'ALL')
    AND qual = 'true' AND roles && ARRAY[current_user::name, 'public'::name])"""


@dataclass(frozen=True)
class Doomed:
    """An object gc deletes (or, in a dry run, would), and why."""

    key: str
    size: int
    modified: datetime
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "size": self.size,
            "modified": self.modified.isoformat(),
            "reason": self.reason,
        }


@dataclass
class Report:
    scanned: int = 0
    doomed: list[Doomed] = field(default_factory=list)
    deleted: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)


async def _classify(
    pool: asyncpg.Pool | asyncpg.Connection, page: list[ObjectInfo], abandoned_after_s: float
) -> dict[str, str | None]:
    """key -> reason to delete it, or None to keep it."""
    rows = await pool.fetch(_NAMED, [o.key for o in page], float(abandoned_after_s))
    named = {r["raw_path"]: r for r in rows}
    verdict: dict[str, str | None] = {}
    for o in page:
        row = named.get(o.key)
        if row is None:
            verdict[o.key] = "orphan"
        elif row["status"] == "expired":
            verdict[o.key] = "expired"
        else:
            verdict[o.key] = "abandoned" if row["abandoned"] else None
    return verdict


async def collect(
    pool: asyncpg.Pool | asyncpg.Connection,
    storage: Storage,
    *,
    grace_s: float,
    abandoned_after_s: float,
    dry_run: bool = False,
    on_page: Callable[[Report], None] | None = None,
) -> Report:
    """Find (and unless `dry_run`, delete) the raw objects no live upload needs that are older
    than `grace_s`. A failed delete is reported in `errors`, the others go on."""
    if not await pool.fetchval(_SEES_ALL):
        raise ConfigurationError(
            "storage_gc_rls",
            "this Postgres login does not see every document (row-level "
            "security): storage gc would take live objects for orphans",
        )
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    report = Report()
    async for page in storage.scan(RAW_PREFIX):
        report.scanned += len(page)
        old = [o for o in page if o.modified < cutoff]
        verdict = await _classify(pool, old, abandoned_after_s) if old else {}
        for o in old:
            if (reason := verdict[o.key]) is None:
                continue
            report.doomed.append(Doomed(o.key, o.size, o.modified, reason))
            if dry_run:
                continue
            try:
                await storage.delete(o.key)
                report.deleted += 1
            except Exception as exc:  # one object's failure must not stop the sweep
                report.errors.append({"key": o.key, "error": f"{type(exc).__name__}: {exc}"})
        if on_page is not None:
            on_page(report)
    return report
