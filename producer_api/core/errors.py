"""One error shape for every failure: `{"error": {"code", "message", "correlation_id"}}`.

Routes raise `ApiError`; FastAPI's own 404/405/422 and unexpected exceptions (see
`core.correlation`) are rendered in the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "file_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error response: HTTP status, stable machine-readable `code`, human `message`."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    """Missing and not-yours look the same: never 403, never data."""
    return ApiError(404, "not_found", f"{what} not found")


def correlation_of(request: Request) -> str | None:
    return getattr(request.state, "correlation_id", None)


def error_response(
    status: int,
    code: str,
    message: str,
    correlation_id: str | None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "correlation_id": correlation_id}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, correlation_of(request), exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    return error_response(
        exc.status_code, code, str(exc.detail), correlation_of(request), exc.headers
    )


def _location(error: dict[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ())) or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    message = "; ".join(f"{_location(e)}: {e.get('msg', 'invalid')}" for e in errors[:3])
    if len(errors) > 3:
        message += f" (+{len(errors) - 3} more)"
    return error_response(422, "validation_error", message, correlation_of(request))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
