"""The stage runtime: a stage is a `StageApp` (input topic, handler, output topic) whose
handler gets a `StageContext` (the event's job, storage, the idempotent write); `server.run_stage`
serves it with /health, /ready and /metrics. Submodules: stage (consume, retry, DLQ,
commit), context, deliveries, faults, lag, metrics, server."""

from accessa.runtime.context import StageContext, StageResources, retry_infra
from accessa.runtime.stage import StageApp

__all__ = ["StageApp", "StageContext", "StageResources", "retry_infra"]
