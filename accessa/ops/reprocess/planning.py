"""What a reprocess request means and would do: the target version, and each document's part."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

import asyncpg

from accessa.config import Settings
from consumers.chunker.chunking import resolve_version
from consumers.embedder.models import check_model

FromStage = Literal["chunk", "embed"]
Action = Literal["queue", "resume", "already_active", "busy", "not_ready"]


@dataclass(frozen=True)
class Target:
    """What to build. `chunker_version` None (from `embed`): each document keeps its chunks."""

    from_stage: FromStage
    chunker_version: str | None
    embed_model: str


@dataclass
class Planned:
    """One document's part in a reprocess: what it has, what it gets, and what happens."""

    document_id: uuid.UUID
    action: Action
    active_chunker_version: str | None
    active_embed_model: str | None
    chunker_version: str | None
    embed_model: str
    job_id: uuid.UUID | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in asdict(self).items()}


def resolve_target(
    settings: Settings,
    from_stage: str,
    chunker_version: str | None = None,
    embed_model: str | None = None,
) -> Target:
    """Check a request before anything is touched; ValueError says what is wrong. Unnamed
    parts default to the configured chunker version and embedding model."""
    if from_stage not in ("chunk", "embed"):
        raise ValueError(f"--from-stage must be chunk or embed, not {from_stage!r}")
    if from_stage == "embed" and chunker_version:
        raise ValueError(
            "--from-stage embed keeps each document's chunks; "
            "a new chunker version needs --from-stage chunk"
        )
    chunker = None
    if from_stage == "chunk":
        chunker = resolve_version(
            chunker_version or settings.chunker_version,
            target_tokens=settings.chunk_target_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
        ).version
    model = embed_model or settings.embed_model
    check_model(model, settings.embed_dimensions)
    return Target(from_stage, chunker, model)  # type: ignore[arg-type]


# Each document with its active version, the parse its last completed job used, and its
# unfinished reprocess job if any.
PLAN = """
SELECT d.document_id, d.user_id, d.active_chunker_version, d.active_embed_model,
       src.parsed_sha256, p.job_id AS pending_job, p.reprocess AS pending
FROM documents d
LEFT JOIN LATERAL (
  SELECT parsed_sha256 FROM upload_jobs j
  WHERE j.document_id = d.document_id AND j.status = 'complete'
  ORDER BY j.completed_at DESC NULLS LAST LIMIT 1) src ON true
LEFT JOIN LATERAL (
  SELECT job_id, reprocess FROM upload_jobs j
  WHERE j.document_id = d.document_id AND j.kind = 'reprocess'
    AND j.state NOT IN ('done', 'deadletter')) p ON true
WHERE ($1::uuid IS NULL AND d.active_chunker_version IS NOT NULL) OR d.document_id = $1
ORDER BY d.created_at, d.document_id
"""


async def plan(
    pool: asyncpg.Pool, target: Target, *, document: uuid.UUID | None = None
) -> list[Planned]:
    """What a reprocess of `document` (None: every searchable document) would do."""
    planned = []
    for row in await pool.fetch(PLAN, document):
        active = (row["active_chunker_version"], row["active_embed_model"])
        chunker = target.chunker_version or active[0]
        item = Planned(row["document_id"], "queue", *active, chunker, target.embed_model)
        if active[0] is None or row["parsed_sha256"] is None:
            item.action, item.reason = "not_ready", "the document has never completed"
        elif (chunker, target.embed_model) == active:
            item.action, item.reason = "already_active", "the target version is active"
        elif row["pending_job"] is not None:
            pending = row["pending"]
            item.job_id = row["pending_job"]
            if (pending["chunker_version"], pending["embed_model"]) == (chunker, item.embed_model):
                item.action, item.reason = "resume", "an unfinished reprocess builds it"
            else:
                item.action = "busy"
                item.reason = (
                    f"an unfinished reprocess builds {pending['chunker_version']} / "
                    f"{pending['embed_model']}"
                )
        planned.append(item)
    return planned
