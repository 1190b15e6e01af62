"""Operational endpoints: /health (alive), /ready (Postgres + Kafka), /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from accessa.health import broker_check
from accessa.runtime.metrics import REGISTRY
from accessa.runtime.server import run_checks
from producer_api.core.config import SettingsDep
from producer_api.models import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is up."""
    return Health()


@router.get(
    "/ready",
    response_model=Ready,
    response_model_exclude_none=True,
    responses={503: {"model": Ready}},
)
async def ready(request: Request, response: Response, settings: SettingsDep) -> Ready:
    """Postgres answers and the Kafka broker is reachable (503 otherwise)."""
    checks, reasons = await run_checks(
        {
            "postgres": request.app.state.db.problem,
            "kafka": lambda: broker_check(settings, timeout_s=3, process="api"),
        }
    )
    ok = all(checks.values())
    response.status_code = 200 if ok else 503
    return Ready(ready=ok, checks=checks, reasons=reasons or None)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi() -> dict[str, Any]:
    """The AsyncAPI document of the pipeline's topics and events (as in docs/asyncapi.json)."""
    from importlib.metadata import version

    from accessa.asyncapi import document

    return document(version("accessa-ingest"))
