"""Console pages: pipeline, jobs, document, DLQ, cost; and the two actions, retry and redrive.

Every action needs a session with the ops role and the session's CSRF token in the form, and
is written to the `events` audit table with stage `console:<operator>`."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from accessa import console_auth
from accessa import cost as spend
from accessa import operations as ops
from accessa.config import Settings
from accessa.console_auth import OPS_ROLE, ConsoleSession
from producer_api import job_retry
from producer_api.console import data
from producer_api.core.config import Db
from producer_api.core.errors import ApiError
from producer_api.core.security import Principal

COOKIE = "accessa_console"
PAGE_SIZE = 50
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)


class ConsoleDenied(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        self.status, self.title, self.message = status, title, message


async def denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleDenied)
    return templates.TemplateResponse(
        request,
        "denied.html",
        {"title": exc.title, "message": exc.message, "session": None},
        status_code=exc.status,
    )


def _pool(request: Request) -> asyncpg.Pool:
    pool = request.app.state.pool
    if pool is None:
        raise ConsoleDenied(503, "Postgres unavailable", "The console has no database connection.")
    return pool


async def current_session(request: Request) -> ConsoleSession:
    cookie = request.cookies.get(COOKIE)
    found = await console_auth.session(_pool(request), cookie) if cookie else None
    if found is None:
        raise ConsoleDenied(
            401, "Not signed in", "Run `accessa console` and open the link it prints."
        )
    return found


SessionDep = Annotated[ConsoleSession, Depends(current_session)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _page(request: Request, name: str, session: ConsoleSession | None, **ctx: Any) -> Response:
    return templates.TemplateResponse(request, name, {"session": session, **ctx})


async def _authorize_action(request: Request, session: ConsoleSession, csrf: str) -> None:
    """Refuse an action without the ops role or without this session's CSRF token."""
    if session.role != OPS_ROLE:
        raise ConsoleDenied(403, "Not allowed", "Actions need the ops role.")
    if not csrf or not hmac.compare_digest(csrf, session.csrf):
        raise ConsoleDenied(403, "Refused", "The form's CSRF token is missing or wrong.")


async def _audit(
    pool: asyncpg.Pool,
    session: ConsoleSession,
    action: str,
    *,
    document_id: uuid.UUID | None,
    **detail: Any,
) -> None:
    """One audit row per console action (no job_id: users' job streams show only the job's
    own transitions, which carry the same actor)."""
    await pool.execute(
        """INSERT INTO events (document_id, stage, kind, detail) VALUES ($1, $2, $3, $4)""",
        document_id,
        f"console:{session.operator}",
        f"console_{action}",
        json.loads(json.dumps(jsonable_encoder(detail))),
    )


# --- login


@router.get("/login")
async def login(request: Request, token: Annotated[str, Query(max_length=200)] = "") -> Response:
    """Trade the one-time token for a session cookie, then go to the pipeline page."""
    settings = _settings(request)
    spent = (
        await console_auth.redeem_login_token(
            _pool(request), token, session_ttl_s=settings.console_session_ttl_s
        )
        if token
        else None
    )
    if spent is None:
        raise ConsoleDenied(
            401,
            "Link not valid",
            "This login link was already used or has expired. Run `accessa console` for a new one.",
        )
    cookie, _ = spent
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=settings.console_session_ttl_s,
        httponly=True,
        samesite="strict",
        path="/console",
        secure=request.url.scheme == "https",
    )
    return response


# --- pipeline


async def _snapshot(request: Request) -> dict[str, Any]:
    state = request.app.state
    if getattr(state, "console_snapshots", None) is None:
        state.console_snapshots = data.Snapshots()
    snapshot: dict[str, Any] = await state.console_snapshots.get(
        state.settings, _pool(request), state.db
    )
    return snapshot


@router.get("/")
async def pipeline_page(request: Request, session: SessionDep) -> Response:
    return _page(request, "pipeline.html", session, s=await _snapshot(request), nav="pipeline")


@router.get("/live/pipeline")
async def pipeline_live(request: Request, session: SessionDep) -> Response:
    return _page(request, "_pipeline_live.html", session, s=await _snapshot(request))


@router.get("/api/pipeline")
async def pipeline_json(request: Request, session: SessionDep) -> JSONResponse:
    return JSONResponse(jsonable_encoder(await _snapshot(request)))


# --- jobs


def _parse_filters(params: dict[str, str]) -> tuple[data.JobFilter, list[str]]:
    problems, f = [], data.JobFilter()
    if (state := params.get("state")) and state in data.JOB_STATES:
        f.state = state
    elif state:
        problems.append(f"unknown state {state!r}")
    f.stage = params.get("stage") or None
    f.flag = params.get("flag") or None
    if user := params.get("user"):
        try:
            f.user = uuid.UUID(user)
        except ValueError:
            problems.append("user must be a uuid")
    for name in ("since", "until"):
        if value := params.get(name):
            try:
                setattr(f, name, datetime.fromisoformat(value).astimezone())
            except ValueError:
                problems.append(f"{name} must be a date or time (YYYY-MM-DD[THH:MM])")
    return f, problems


@router.get("/jobs")
async def jobs_page(request: Request, session: SessionDep) -> Response:
    params = {k: v.strip() for k, v in request.query_params.items()}
    filters, problems = _parse_filters(params)
    after = data.decode_cursor(params["cursor"]) if params.get("cursor") else None
    if params.get("cursor") and after is None:
        problems.append("the cursor is not one this page made")
    pool = _pool(request)
    rows, cursor = await data.list_jobs(pool, filters, after=after, limit=PAGE_SIZE)
    keep = {k: v for k, v in params.items() if v and k != "cursor"}
    return _page(
        request,
        "jobs.html",
        session,
        nav="jobs",
        rows=rows,
        next_cursor=cursor,
        params=keep,
        problems=problems,
        states=data.JOB_STATES,
        stages=data.STAGE_ORDER,
    )


async def _job(request: Request, job_id: str) -> dict[str, Any]:
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        raise ConsoleDenied(404, "No such job", f"{job_id!r} is not a job id.") from None
    pool = _pool(request)
    job = await data.job_detail(pool, jid)
    if job is None:
        raise ConsoleDenied(404, "No such job", f"No job {jid}.")
    return job


@router.get("/jobs/{job_id}")
async def document_page(request: Request, job_id: str, session: SessionDep) -> Response:
    job = await _job(request, job_id)
    return _page(
        request,
        "document.html",
        session,
        nav="jobs",
        job=job,
        notice=request.query_params.get("notice"),
    )


@router.get("/live/jobs/{job_id}")
async def document_live(request: Request, job_id: str, session: SessionDep) -> Response:
    return _page(request, "_document_live.html", session, job=await _job(request, job_id))


@router.post("/jobs/{job_id}/retry")
async def retry(
    request: Request, job_id: str, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    """The API's retry (reopen the job, re-emit its failed stage's input), as this operator."""
    await _authorize_action(request, session, csrf)
    job = await _job(request, job_id)
    pool, actor = _pool(request), f"console:{session.operator}"
    db = Db(pool, Principal(user_id=None, role="service_role", claims={}))
    try:
        await job_retry.retry(db=db, settings=_settings(request), job_id=job["job_id"], actor=actor)
        result = "retried"
    except ApiError as exc:
        result = exc.message
    await _audit(
        pool, session, "retry", document_id=job["document_id"], job_id=job["job_id"], result=result
    )
    return RedirectResponse(f"/console/jobs/{job['job_id']}?notice={result}", status_code=303)


# --- DLQ


@router.get("/dlq")
async def dlq_page(request: Request, session: SessionDep) -> Response:
    settings = _settings(request)
    records = [ops.summarize(r) for r in await ops.dlq_records(settings)]
    outbox = await ops.outbox_failures(_pool(request), settings)
    redriven = {
        r["dlq_id"]
        for r in await _pool(request).fetch(
            "SELECT dlq_id FROM dlq_redrives WHERE dlq_id = ANY($1::text[])",
            [r["id"] for r in records],
        )
    }
    return _page(
        request,
        "dlq.html",
        session,
        nav="dlq",
        records=records,
        outbox=outbox,
        redriven=redriven,
        notice=request.query_params.get("notice"),
    )


async def _record(request: Request, dlq_id: str) -> Any:
    settings, record = _settings(request), None
    if dlq_id.rsplit(":", 2)[0] in ops.dlq_topics(settings):  # only this pipeline's DLQs
        with contextlib.suppress(ValueError):
            record = await ops.dlq_record(settings, dlq_id)
    if record is None or record.id != dlq_id:
        raise ConsoleDenied(404, "No such record", f"No dead-lettered record {dlq_id!r}.")
    return record


@router.get("/dlq/record")
async def dlq_show(request: Request, session: SessionDep, id: str = "") -> Response:
    record = await _record(request, id)
    return _page(
        request,
        "dlq_record.html",
        session,
        nav="dlq",
        r=ops.summarize(record),
        headers=record.headers,
        confirm=request.query_params.get("confirm") == "1",
        target=ops.stage_of(_settings(request), record.topic),
        payload=(record.value or b"").decode(errors="replace"),
    )


@router.post("/dlq/redrive")
async def dlq_redrive(
    request: Request,
    session: SessionDep,
    id: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Redrive one record, once confirmed (the record page's confirmation step posts
    confirm=yes)."""
    await _authorize_action(request, session, csrf)
    record = await _record(request, id)
    if confirm != "yes":
        return RedirectResponse(f"/console/dlq/record?id={id}&confirm=1", status_code=303)
    pool = _pool(request)
    [result] = await ops.redrive(
        _settings(request), pool, [record], actor=f"console:{session.operator}"
    )
    summary = ops.summarize(record)
    await _audit(
        pool,
        session,
        "redrive",
        document_id=ops._uuid(summary["document_id"]),
        **dataclasses.asdict(result),
    )
    if result.status == "redriven" and summary["job_id"]:
        return RedirectResponse(
            f"/console/jobs/{summary['job_id']}?notice=redriven", status_code=303
        )
    return RedirectResponse(f"/console/dlq?notice={result.status}", status_code=303)


# --- cost


@router.get("/cost")
async def cost_page(request: Request, session: SessionDep) -> Response:
    pool, settings = _pool(request), _settings(request)
    report = await spend.cost_report(pool, settings)
    days = await spend.cost_by_day(pool)
    return _page(request, "cost.html", session, nav="cost", report=report, days=days)


def _badge(state: str | None) -> str:
    return {"done": "ok", "deadletter": "bad", "retryable": "warn", "working": "busy"}.get(
        state or "", "idle"
    )


def _ago(at: datetime | None) -> str:
    if at is None:
        return ""
    seconds = (datetime.now(at.tzinfo) - at).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


templates.env.filters["badge"] = _badge
templates.env.filters["ago"] = _ago
templates.env.filters["hhmmss"] = lambda at: at.strftime("%Y-%m-%d %H:%M:%S") if at else ""
