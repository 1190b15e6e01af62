"""`accessa upload` and `accessa jobs`: the Producer API's HTTP client for people and scripts.

Auth: `--token`, else `ACCESSA_TOKEN`, else `--user <uuid>` mints a local dev token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, get_args

import httpx
import typer
from httpx_sse import SSEError, connect_sse
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from accessa.cli.output import Exit, console, emit_json, err_console, fail
from accessa.config import get_settings
from schemas.events import QualityFlag

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TokenOpt = Annotated[
    str | None, typer.Option(envvar="ACCESSA_TOKEN", help="Bearer token (or ACCESSA_TOKEN).")
]
UserOpt = Annotated[
    uuid.UUID | None, typer.Option(help="Mint a local dev token for this user id instead.")
]
ApiUrlOpt = Annotated[str | None, typer.Option(help="API base URL (default: settings.api_url).")]
FAILED = ("failed_parse", "failed_chunking", "failed_embedding")
_STREAM_TRIES = 5
# Heartbeats come every ACCESSA_SSE_HEARTBEAT_S (15 s): a read silent for 45 s means the
# stream is gone.
_STREAM_TIMEOUT = httpx.Timeout(30, read=45)


def _client(token: str | None, user: uuid.UUID | None, api_url: str | None) -> httpx.Client:
    settings = get_settings()
    if token is None and user is not None:
        from accessa.auth import mint_token

        token = mint_token(settings, user)
    if token is None:
        fail("no token: pass --token, set ACCESSA_TOKEN or use --user <uuid>", Exit.USAGE)
    return httpx.Client(
        base_url=api_url or settings.api_url,
        timeout=120,
        headers={"Authorization": f"Bearer {token}"},
    )


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _get(
    path: str,
    params: dict[str, Any],
    token: str | None,
    user: uuid.UUID | None,
    api_url: str | None,
    as_json: bool,
) -> Any:
    """GET an API route's JSON body, or fail with its error."""
    with _client(token, user, api_url) as client:
        response = client.get(path, params=params)
    if not response.is_success:
        fail(_error_text(response), as_json=as_json)
    return response.json()


def _finished(job: dict[str, Any]) -> bool:
    return job.get("state") in ("done", "deadletter") or job.get("status") in FAILED


def _get_job(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    """The job, or None when rate limited (the caller polls again later)."""
    response = client.get(f"/api/v2/jobs/{job_id}")
    if response.status_code == 429:
        return None
    response.raise_for_status()
    return response.json()


def _follow(
    client: httpx.Client, job_id: str, seen: Callable[[dict[str, Any]], None], deadline: float
) -> dict[str, Any] | None:
    """Follow the job's event stream until it ends; the final job, or None when the stream is
    unavailable (an older API, a proxy that buffers) or keeps breaking: then poll instead.
    A dropped stream is resumed with `Last-Event-ID`; `_STREAM_TRIES` breaks in a row (with no
    event between them) give up. httpx-sse parses the stream; a heartbeat (a comment and a
    blank line) is never an event (a hand-written parser once made it an empty one)."""
    last_id: str | None = None
    failures = 0
    while failures < _STREAM_TRIES and time.monotonic() < deadline:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(
                client,
                "GET",
                f"/api/v2/jobs/{job_id}/events",
                headers=headers,
                timeout=_STREAM_TIMEOUT,
            ) as source:
                if source.response.status_code != 200:
                    return None
                for sse in source.iter_sse():
                    if not sse.data:  # httpx-sse dispatches a heartbeat once an id was seen;
                        continue  # the SSE spec dispatches no event with an empty data buffer
                    if sse.event == "end":
                        return sse.json()
                    if sse.id:
                        last_id = sse.id
                    failures = 0
                    seen(sse.json())
                    if time.monotonic() > deadline:
                        return None
        except (httpx.TransportError, SSEError, ValueError):
            pass
        failures += 1  # the stream ended without `end`, or broke: reconnect
    return None


_POLL_ERRORS = 5  # failed status reads in a row before a job is given up on


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"stopped following the job: {_error_text(exc.response)}"
    return f"stopped following the job: the API is unreachable ({type(exc).__name__})"


def _poll(
    client: httpx.Client,
    name: str,
    accepted: dict[str, dict[str, Any]],
    final: dict[str, dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
    interval: float,
    deadline: float,
) -> None:
    """Poll the job until it finishes or `deadline`; raises after `_POLL_ERRORS` errors in a
    row (a restarting API answers 5xx or nothing for a while)."""
    job_id = accepted[name]["job_id"]
    errors = 0
    while True:
        try:
            current = _get_job(client, job_id)
            errors = 0
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < 500 or errors + 1 >= _POLL_ERRORS:
                raise
            errors, current = errors + 1, None
        except httpx.TransportError:
            if errors + 1 >= _POLL_ERRORS:
                raise
            errors, current = errors + 1, None
        if current is not None:
            show(current)
            accepted[name] = {**accepted[name], **current}
            if _finished(current):
                final[name] = accepted[name]
                return
        if time.monotonic() > deadline:
            return
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def _wait(
    client: httpx.Client,
    accepted: dict[str, dict[str, Any]],
    interval: float,
    quiet: bool,
    timeout_s: float,
) -> dict[str, dict[str, Any]]:
    """Follow each job until it finishes or `timeout_s` passes, with a progress bar per file:
    live from the API's event stream, else by polling (~10 polls per job per minute allowed).
    Jobs still running at the deadline are returned as last seen."""
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
    ]

    def track(progress: Progress, task: TaskID, name: str) -> None:
        job = accepted[name]

        def show(current: dict[str, Any]) -> None:
            if current.get("progress") is not None:
                progress.update(task, completed=current["progress"])
            if current.get("stage"):
                progress.update(task, description=f"{Path(name).name}: {current['stage']}")

        try:
            ended = _follow(client, job["job_id"], show, deadline)
            if ended is not None:
                show(ended)
                accepted[name] = final[name] = {**job, **ended}
                return
            _poll(client, name, accepted, final, show, interval, deadline)
        except httpx.HTTPError as exc:  # the API went away for good: say so, keep the others
            accepted[name] = {**accepted[name], "wait_error": _describe(exc)}

    with Progress(*columns, console=err_console, disable=quiet) as progress:
        tasks = {n: progress.add_task(f"{Path(n).name}: queued", total=100) for n in accepted}
        with ThreadPoolExecutor(max_workers=min(len(accepted), 16)) as pool:
            for future in [pool.submit(track, progress, tasks[n], n) for n in accepted]:
                future.result()
    return {**accepted, **final}


def upload(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="PDF files.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow each job until it ends.")] = False,
    as_json: JsonOpt = False,
    token: TokenOpt = None,
    user: UserOpt = None,
    api_url: ApiUrlOpt = None,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds.")] = 900,
    poll_interval: Annotated[float, typer.Option(hidden=True)] = 6.5,
) -> None:
    """Upload PDFs through the API; with --wait, exit 1 if any job fails."""
    results: dict[str, dict[str, Any]] = {}
    rejected: dict[str, str] = {}
    with _client(token, user, api_url) as client:
        for path in files:
            try:
                with path.open("rb") as handle:
                    part = (path.name, handle, "application/pdf")
                    response = client.post("/api/v2/documents", files={"file": part})
            except httpx.TimeoutException as exc:  # unreachable: the CLI's exit 3 (unreachable.py)
                rejected[str(path)] = f"the API did not answer in time ({type(exc).__name__})"
                continue
            if response.is_success:
                results[str(path)] = response.json()
            else:
                rejected[str(path)] = _error_text(response)
        if wait and results:
            results = _wait(client, results, poll_interval, quiet=as_json, timeout_s=timeout)
    failed = {
        n: j
        for n, j in results.items()
        if j.get("status") in FAILED
        or j.get("state") == "deadletter"
        or (wait and not _finished(j))
    }
    if as_json:
        emit_json({"jobs": results, "rejected": rejected})
    else:
        for name, job in results.items():
            note = " (duplicate)" if job.get("duplicate") else ""
            console.print(f"{Path(name).name}: job {job['job_id']} {job.get('status')}{note}")
        for name, reason in rejected.items():
            err_console.print(f"[red]{Path(name).name}: rejected[/red] {reason}")
        for name, job in failed.items():
            error = job.get("last_error") or {}
            reason = f"{error.get('code', '?')}: {error.get('message', '')}"
            if job.get("wait_error"):
                reason = job["wait_error"]
            elif not _finished(job):
                reason = f"still {job.get('stage') or job['status']} after --timeout"
            err_console.print(f"[red]{Path(name).name}: {job.get('status')}[/red] {reason}")
    if rejected or failed:
        raise typer.Exit(int(Exit.FAILED))


# Built from the Literal so the two cannot drift; mypy reads only literal member lists.
QualityFilter = StrEnum("QualityFilter", {flag: flag for flag in get_args(QualityFlag)})  # type: ignore[misc]


def jobs(
    as_json: JsonOpt = False,
    token: TokenOpt = None,
    user: UserOpt = None,
    api_url: ApiUrlOpt = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many.")] = 20,
    quality: Annotated[
        QualityFilter | None,
        typer.Option(help="Only jobs whose parsed document has this quality flag."),
    ] = None,
) -> None:
    """List your jobs, newest first, with their quality flags (is the document readable?)."""
    params: dict[str, Any] = {
        "limit": limit,
        **({"status": status} if status else {}),
        **({"quality": quality.value} if quality else {}),
    }
    items = _get("/api/v2/jobs", params, token, user, api_url, as_json)["items"]
    if as_json:
        emit_json(items)
        return
    table = Table("job", "file", "status", "stage", "%", "quality", "created")
    for job in items:
        flags = ", ".join((job.get("quality") or {}).get("flags", [])) or "-"
        table.add_row(
            job["job_id"],
            job["filename"],
            job["status"],
            job["stage"],
            str(job["progress"]),
            flags,
            job["created_at"][:19],
        )
    console.print(table)


class SearchMode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"


def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option(min=1, max=50, help="How many chunks.")] = 5,
    mode: Annotated[
        SearchMode,
        typer.Option(help="hybrid: vectors fused with full-text ranking; vector: vectors only."),
    ] = SearchMode.hybrid,
    as_json: JsonOpt = False,
    token: TokenOpt = None,
    user: UserOpt = None,
    api_url: ApiUrlOpt = None,
) -> None:
    """Your best-matching chunks for a query (document, pages, heading path, score)."""
    params = {"q": query, "k": k, "mode": mode.value}
    hits = _get("/api/v2/search", params, token, user, api_url, as_json)["hits"]
    if as_json:
        emit_json(hits)
        return
    table = Table("score", "document", "pages", "section", "text")
    for hit in hits:
        pages = f"{hit['page_start']}-{hit['page_end']}"
        table.add_row(
            f"{hit['score']:.3f}",
            hit["filename"],
            pages,
            " > ".join(hit["heading_path"]),
            hit["content"][:80],
        )
    console.print(table if hits else "no matches")
