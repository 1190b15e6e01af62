"""LlamaParse v1 REST client: upload a PDF, wait for the job, fetch its markdown.

Two modes: `parse()` polls until the job ends; `submit(..., webhook_url)` returns at once, the
API's webhook route checks `verify_webhook_signature(...)` and records the outcome, and the
parser then calls `fetch_markdown(job_id)` (see `backends.LlamaParseWebhookBackend`).
Failures map onto `accessa.errors`: 429/5xx/timeouts/connection errors are transient,
bad credentials and failed jobs are permanent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from accessa.errors import PermanentError, TransientError

API = "/api/v1/parsing"


def verify_webhook_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True when `signature` is `sha256=<hex hmac(secret, "{timestamp}.{body}")>` and fresh."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(f"sha256={mac.hexdigest()}".encode(), signature.encode())


def webhook_headers_plausible(
    timestamp: str, signature: str, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """What can be checked of a webhook before its body is read: a `sha256=<64 hex>`
    signature and a fresh timestamp (`verify_webhook_signature` then checks the HMAC)."""
    if re.fullmatch(r"sha256=[0-9a-f]{64}", signature) is None:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    return abs((time.time() if now is None else now) - sent_at) <= tolerance_s


def retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds from `retry-after-ms` / `Retry-After` (number or HTTP date), if present."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    if (value := headers.get("retry-after")) is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class LlamaParseClient:
    """Async LlamaParse client; use as `async with` or call `aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 120.0,
        poll_interval_s: float = 0.5,
        *,
        max_poll_interval_s: float = 5.0,
        request_attempts: int = 3,
    ) -> None:
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.request_attempts = request_attempts
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(min(timeout_s, 60.0)),
        )

    async def __aenter__(self) -> LlamaParseClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def parse(self, pdf: bytes, filename: str) -> str:
        """Markdown of `pdf`: upload, poll with bounded backoff until the job ends, fetch."""
        deadline = time.monotonic() + self.timeout_s
        job_id = await self.submit(pdf, filename)
        interval = self.poll_interval_s
        while True:
            try:
                status = await self.status(job_id)
            except TransientError as e:  # one failed poll is not a failed job
                status, interval = {"status": "PENDING"}, max(interval, e.defer_s or 0)
            if status["status"] != "PENDING":
                _raise_if_failed(job_id, status)
                return await self._markdown(job_id)
            if (left := deadline - time.monotonic()) <= 0:
                raise TransientError(f"LlamaParse job {job_id} still pending", code="parse_timeout")
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 1.5, self.max_poll_interval_s)

    async def submit(self, pdf: bytes, filename: str, webhook_url: str | None = None) -> str:
        """Upload `pdf`; returns the job id. With `webhook_url` LlamaParse calls back when done."""
        data = {"result_type": "markdown"} | ({"webhook_url": webhook_url} if webhook_url else {})
        files = {"file": (filename, pdf, "application/pdf")}
        resp = await self._request("POST", f"{API}/upload", files=files, data=data)
        return str(resp.json()["id"])

    async def status(self, job_id: str) -> dict[str, Any]:
        """The job's status document ({"id", "status", "error_message"?})."""
        return (await self._request("GET", f"{API}/job/{job_id}")).json()

    async def fetch_markdown(self, job_id: str) -> str:
        """Markdown of a finished job (webhook mode); failed jobs raise like `parse()`."""
        status = await self.status(job_id)
        if status["status"] == "PENDING":
            raise TransientError(f"LlamaParse job {job_id} still pending", code="parse_pending")
        _raise_if_failed(job_id, status)
        return await self._markdown(job_id)

    async def _markdown(self, job_id: str) -> str:
        resp = await self._request("GET", f"{API}/job/{job_id}/result/markdown")
        return str(resp.json()["markdown"])

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried a few times on transient failures; errors mapped."""
        for attempt in range(1, self.request_attempts):
            try:
                return await self._request_once(method, path, **kwargs)
            except TransientError as e:
                await asyncio.sleep(min(e.defer_s or 0.2 * 2**attempt, self.max_poll_interval_s))
        return await self._request_once(method, path, **kwargs)

    async def _request_once(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self._http.request(method, path, **kwargs)
            resp.raise_for_status()
        except httpx.TimeoutException as e:
            raise TransientError(f"LlamaParse timed out: {e!r}", code="llamaparse_timeout") from e
        except httpx.TransportError as e:
            raise TransientError(f"LlamaParse unreachable: {e!r}", code="llamaparse_down") from e
        except httpx.HTTPStatusError as e:
            raise _status_error(e) from e
        return resp


def _status_error(e: httpx.HTTPStatusError) -> Exception:
    status, text = e.response.status_code, e.response.text[:300]
    message = f"LlamaParse {e.request.method} {e.request.url.path} -> {status}: {text}"
    if status in (401, 403):
        return PermanentError(message, code="llamaparse_auth")
    if status == 404:  # e.g. a job LlamaParse has already purged
        return PermanentError(message, code="llamaparse_not_found")
    if status in (408, 409, 429) or status >= 500:
        code = "llamaparse_rate_limited" if status == 429 else "llamaparse_unavailable"
        return TransientError(message, code=code, defer_s=retry_after_s(e.response.headers))
    return PermanentError(message, code="llamaparse_rejected")


def _raise_if_failed(job_id: str, status: dict[str, Any]) -> None:
    if status["status"] == "SUCCESS":
        return
    reason = str(status.get("error_message") or status.get("error_code") or status["status"])
    message = f"LlamaParse job {job_id} ended {status['status']}: {reason}"
    if any(word in reason.lower() for word in ("password", "encrypted")):
        raise PermanentError(message, code="pdf_encrypted")
    raise PermanentError(message, code="llamaparse_failed")
