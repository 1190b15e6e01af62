"""Callbacks from external services. LlamaParse (webhook mode) posts here when a parse job
ends; the request carries no JWT and is authenticated by its HMAC signature alone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accessa.providers import llamaparse_jobs
from accessa.providers.llamaparse import verify_webhook_signature
from producer_api.core.config import PoolDep, SettingsDep
from producer_api.core.errors import ApiError, not_found
from producer_api.models import ErrorResponse

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class LlamaParseEvent(BaseModel):
    """What LlamaParse posts when a job ends (other fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    job_id: str = Field(min_length=1, max_length=200, description="The LlamaParse job id.")
    status: str = Field(max_length=64, examples=["SUCCESS", "ERROR"])
    event: str | None = Field(None, max_length=64, examples=["parse.success", "parse.error"])
    error_message: str | None = Field(None, max_length=4000)


class WebhookRecorded(BaseModel):
    """The job's status once the event is recorded."""

    job_id: str
    status: llamaparse_jobs.Outcome


TimestampHeader = Annotated[
    str, Header(alias="X-Llamaparse-Timestamp", description="Unix seconds when it was sent.")
]
SignatureHeader = Annotated[
    str,
    Header(
        alias="X-Llamaparse-Signature",
        description="`sha256=<hex HMAC-SHA256>` of "
        '`"{timestamp}.{raw body}"` with ACCESSA_LLAMAPARSE_WEBHOOK_SECRET.',
    ),
]
_EVENT_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": LlamaParseEvent.model_json_schema()}},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, invalid or stale signature."},
    404: {"model": ErrorResponse, "description": "Not a job the parser recorded."},
    413: {"model": ErrorResponse, "description": "Larger than ACCESSA_API_MAX_WEBHOOK_KB."},
    422: {"model": ErrorResponse, "description": "A signed body that is not a job event."},
}


@router.post(
    "/llamaparse",
    response_model=WebhookRecorded,
    responses=_RESPONSES,
    openapi_extra={"requestBody": _EVENT_BODY},
)
async def llamaparse_webhook(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    timestamp: TimestampHeader = "",
    signature: SignatureHeader = "",
) -> WebhookRecorded:
    """Records how a LlamaParse job ended and wakes the parser waiting for it.

    The signature is checked before the body is read as JSON: a bad, missing or older than
    5 minutes signature is 401 and nothing is written. An event for a job the parser has not
    recorded is 404 (LlamaParse does not retry a 4xx); a webhook can overtake the parser's
    insert, so the parser checks the job itself once it has recorded it.
    """
    body = await request.body()
    secret = settings.llamaparse_webhook_secret.get_secret_value()
    if not verify_webhook_signature(secret, timestamp, body, signature):
        raise ApiError(401, "invalid_signature", "the webhook signature is missing or not valid")
    try:
        event = LlamaParseEvent.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = f"not a LlamaParse job event: {where}: {first['msg']}"
        raise ApiError(422, "validation_error", message) from e
    outcome = llamaparse_jobs.outcome_of(event.status)
    error = (event.error_message or event.event or event.status) if outcome == "error" else None
    status = await llamaparse_jobs.record_outcome(pool, event.job_id, outcome, error)
    if status is None:
        raise not_found(f"LlamaParse job {event.job_id}")
    return WebhookRecorded(job_id=event.job_id, status=status)
