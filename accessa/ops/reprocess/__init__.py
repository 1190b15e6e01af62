"""Versioned reprocessing: build a document's chunks again as another (chunker_version,
embed_model) version beside the active one, switch when it is whole, delete the old one later.

A reprocess is a job (`upload_jobs.kind = 'reprocess'`) that enters the pipeline in front of
the chunker (`from_stage="chunk"`: a `parsed` event naming the target version) or of the
embedder (`"embed"`: the active chunks copied into the job's chunk buffer and a `chunked`
event naming the target model). The stages build the version in the job's buffers; the
finalizer writes it and switches `documents.active_*` in one transaction, so search sees the
old version until that commit and the new one after it. The content-hash embedding cache
means texts already embedded with the target model cost nothing.

Re-running a request is safe: a target that is already active is left alone, and a document's
unfinished reprocess job is resumed by re-publishing its event with the same id, which the
stages deduplicate. `gc` deletes versions that are not active once the document has been on
its active version for the grace period.

`planning` resolves a request and plans each document's part, `enqueue` creates the jobs and
publishes their entry events, `progress` reads the jobs, `stored_versions` lists and collects
the versions in `document_chunks`; this face is what `accessa reprocess` and the tests use.
"""

from accessa.ops.reprocess.enqueue import entry_event, start
from accessa.ops.reprocess.planning import Action, FromStage, Planned, Target, plan, resolve_target
from accessa.ops.reprocess.progress import jobs_progress, recent_jobs
from accessa.ops.reprocess.stored_versions import gc, versions

__all__ = [
    "Action",
    "FromStage",
    "Planned",
    "Target",
    "entry_event",
    "gc",
    "jobs_progress",
    "plan",
    "recent_jobs",
    "resolve_target",
    "start",
    "versions",
]
