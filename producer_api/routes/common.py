"""What every versioned route shares: documented error responses and the request quota."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from producer_api.models import ErrorResponse
from producer_api.ratelimit import limit_requests

_DESCRIPTIONS = {
    400: "Bad request (unreadable body, size/sha256 mismatch, bad cursor, ...).",
    401: "Missing, invalid or expired token.",
    403: "Wrong audience or role; expired or tampered upload URL.",
    404: "Not found, or not yours.",
    409: "Conflicts with the job's current state.",
    410: "The upload expired before its bytes arrived; declare it again.",
    413: "The body is larger than the route's limit (the upload limit, ACCESSA_API_MAX_JSON_KB "
    "of JSON).",
    415: "Not application/pdf.",
    422: "Invalid request or PDF (pdf_corrupt, pdf_encrypted, ...).",
    429: "Rate limited; see Retry-After.",
    503: "A dependency (JWKS) is unavailable.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


AUTHED = errors(400, 401, 403, 413, 422, 429, 503)
QUOTA = [Depends(limit_requests)]
