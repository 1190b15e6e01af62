"""The stage runtime. A stage is a `StageApp` (input topic, handler, output topic) whose handler
gets a `StageContext` (the event's job, storage, its own resources) and returns a `Work` (its
output event and its writes as rows of `Batched` statements), which the runtime commits with
the rest of its poll; `server.run_stage` serves it with /health, /ready and /metrics.

Stage files import only what this module exports. The loop is `stage.py`; each policy beside
it has a module of its own (incoming, work, routing, deliveries, producing, settling, infra,
access, polling, collector)."""

from accessa.runtime.app import StageApp
from accessa.runtime.context import DocumentDeleted, StageContext, StageResources
from accessa.runtime.infra import retry_infra
from accessa.runtime.work import Batched, Work

__all__ = [
    "Batched",
    "DocumentDeleted",
    "StageApp",
    "StageContext",
    "StageResources",
    "Work",
    "retry_infra",
]
