"""A mock of the LlamaParse v1 REST API, as `accessa.providers.llamaparse` uses it.

    POST /api/v1/parsing/upload                   multipart `file` (+ `result_type`, `webhook_url`)
    GET  /api/v1/parsing/job/{id}                 {"id", "status": PENDING|SUCCESS|ERROR, ...}
    GET  /api/v1/parsing/job/{id}/result/markdown {"markdown", "job_metadata": {"job_pages"}}

Markdown is pypdfium2's page text, deterministic for the same bytes: each page is
`<!-- page N -->\\n\\n<text>`, pages joined by `\\n\\n---\\n\\n`. An encrypted PDF ends in
ERROR with "The PDF is encrypted and needs a password"; an unreadable one in ERROR too.

A job stays PENDING for `delay_s` after its upload. With a `webhook_url`, the finished job
is POSTed there as JSON {"event": "parse.success"|"parse.error", "job_id", "status"} with
headers `X-Llamaparse-Timestamp: <unix seconds>` and
`X-Llamaparse-Signature: sha256=<hex hmac_sha256(secret, f"{timestamp}.{raw_body}")>`;
up to 3 attempts while the receiver fails. Deliveries are listed at `GET /_mock/webhooks`.

Simulation and control as in the OpenAI mock: `latency_ms`, `failure_rate` (429 with
`Retry-After`, 500, 503; deterministic from `seed`) on every /api/ endpoint;
`GET /_mock/requests`, `POST /_mock/reset`, `POST /_mock/config` with any of
{latency_ms, failure_rate, seed, delay_s, retry_after_s, fail_next: [status, ...]}.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import pypdfium2 as pdfium
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from mocks.simulation import Simulation, add_control_routes

PAGE_SEPARATOR = "\n\n---\n\n"
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe]")
_PDFIUM_LOCK = threading.Lock()  # pdfium is not thread-safe


def render_markdown(pdf: bytes) -> tuple[str, int]:
    """(markdown, page count) of `pdf`; ValueError with a human reason when unreadable."""
    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(pdf)
        except pdfium.PdfiumError as e:
            if e.err_code == pdfium.raw.FPDF_ERR_PASSWORD:
                raise ValueError("The PDF is encrypted and needs a password.") from e
            raise ValueError(f"The file is corrupt or not a PDF: {e}") from e
        try:
            pages = [_page_text(doc[i]) for i in range(len(doc))]
        finally:
            doc.close()
    sections = [f"<!-- page {n} -->\n\n{text}" for n, text in enumerate(pages, 1)]
    return PAGE_SEPARATOR.join(sections), len(pages)


def _page_text(page: pdfium.PdfPage) -> str:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
    finally:
        textpage.close()
        page.close()
    text = _CONTROL_CHARS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass
class Job:
    id: str
    ready_at: float  # time.monotonic() when the job stops being PENDING
    markdown: str = ""
    pages: int = 0
    error: str | None = None

    def status(self) -> str:
        if time.monotonic() < self.ready_at:
            return "PENDING"
        return "ERROR" if self.error else "SUCCESS"


@dataclass
class MockState(Simulation):
    delay_s: float = 0.0
    jobs: dict[str, Job] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    knobs: tuple[str, ...] = ("latency_ms", "failure_rate", "delay_s", "retry_after_s")

    def reset(self) -> None:
        super().reset()
        for collection in (self.jobs, self.log, self.webhooks):
            collection.clear()

    def failure_response(self, status: int) -> Response:
        if status != 429:
            return JSONResponse({"detail": "Internal server error (mock)"}, status_code=status)
        headers = {"Retry-After": f"{self.retry_after_s:g}"}
        return JSONResponse({"detail": "Rate limit exceeded (mock)"}, 429, headers=headers)


async def _deliver_webhook(state: MockState, job: Job, url: str, secret: str) -> None:
    await asyncio.sleep(max(0.0, job.ready_at - time.monotonic()))  # simulated parse time
    status = job.status()
    event = "parse.success" if status == "SUCCESS" else "parse.error"
    body = json.dumps({"event": event, "job_id": job.id, "status": status}).encode()
    for attempt in range(3):
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Llamaparse-Timestamp": timestamp,
            "X-Llamaparse-Signature": sign(secret, timestamp, body),
        }
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.post(url, content=body, headers=headers)
            answer: int | str = resp.status_code
        except httpx.HTTPError as e:
            answer = repr(e)
        state.webhooks.append({"time": time.time(), "job_id": job.id, "url": url, "answer": answer})
        if isinstance(answer, int) and answer < 500:
            return
        await asyncio.sleep(0.2 * 2**attempt)


def create_app(
    latency_ms: float = 0,
    failure_rate: float = 0.0,
    seed: int = 0,
    delay_s: float = 0.0,
    webhook_secret: str = "whsec-local",
    api_key: str | None = None,
) -> FastAPI:
    """The mock LlamaParse app; each app has its own state. `api_key` None accepts any key."""
    app = FastAPI(title="Mock LlamaParse")
    state = MockState(latency_ms=latency_ms, failure_rate=failure_rate, seed=seed, delay_s=delay_s)
    state.reset()
    app.state.mock = state
    deliveries: set[asyncio.Task[None]] = set()

    @app.middleware("http")
    async def simulate(request: Request, call_next):
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not key or (api_key is not None and key != api_key):
            resp: Response = JSONResponse({"detail": "Invalid authentication credentials"}, 401)
        elif (status := state.draw_failure()) is not None:
            resp = state.failure_response(status)
        else:
            resp = await call_next(request)
        entry = {"time": time.time(), "method": request.method, "path": request.url.path}
        state.log.append(entry | {"status": resp.status_code})
        return resp

    @app.post("/api/v1/parsing/upload")
    async def upload(
        file: Annotated[UploadFile, File()],
        result_type: Annotated[str, Form()] = "markdown",
        webhook_url: Annotated[str | None, Form()] = None,
    ) -> dict[str, str]:
        job = Job(id=str(uuid.uuid4()), ready_at=time.monotonic() + state.delay_s)
        try:
            job.markdown, job.pages = await asyncio.to_thread(render_markdown, await file.read())
        except ValueError as e:
            job.error = str(e)
        state.jobs[job.id] = job
        if webhook_url:
            task = asyncio.create_task(_deliver_webhook(state, job, webhook_url, webhook_secret))
            deliveries.add(task)
            task.add_done_callback(deliveries.discard)
        return {"id": job.id, "status": "PENDING"}

    @app.get("/api/v1/parsing/job/{job_id}")
    async def job_status(job_id: str) -> Response:
        if (job := state.jobs.get(job_id)) is None:
            return JSONResponse({"detail": "Job not found"}, 404)
        body: dict[str, Any] = {"id": job.id, "status": job.status()}
        if body["status"] == "ERROR":
            body |= {"error_code": "PDF_PARSE_ERROR", "error_message": job.error}
        return JSONResponse(body)

    @app.get("/api/v1/parsing/job/{job_id}/result/markdown")
    async def markdown(job_id: str) -> Response:
        if (job := state.jobs.get(job_id)) is None:
            return JSONResponse({"detail": "Job not found"}, 404)
        if (status := job.status()) != "SUCCESS":
            return JSONResponse({"detail": f"Job has no result: {status}"}, 400)
        meta = {"job_pages": job.pages, "credits_used": job.pages, "job_is_cache_hit": False}
        return JSONResponse({"markdown": job.markdown, "job_metadata": meta})

    @app.get("/_mock/requests")
    async def requests_log() -> list[dict[str, Any]]:
        return state.log

    @app.get("/_mock/webhooks")
    async def webhooks_log() -> list[dict[str, Any]]:
        return state.webhooks

    add_control_routes(app, state)
    return app
