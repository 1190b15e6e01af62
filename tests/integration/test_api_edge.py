# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""The API's edge on a real socket (real uvicorn, real Postgres): credentials are checked before
a byte of the body is read, each route's body cap holds while the body streams, connections
are bounded and timed, and a user's event streams are capped.

What the server read is counted by the protocol itself (bytes handed to `data_received`), not
guessed from what the client managed to push into its socket buffers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr

from accessa.config import Settings
from producer_api.core.server import uvicorn_options
from producer_api.main import create_app
from tests.integration.test_api_support import (  # noqa: F401
    LiveServer,
    api_settings,
    bearer,
    sha256,
    unique_pdf,
    user,
)
from tests.utils import ROOT, free_port, wait_for

pytestmark = pytest.mark.integration

MB = 1024 * 1024
SECRET = "whsec-edge-test"
EDGE = {
    "api_header_timeout_s": 1.0,
    "api_sse_streams_per_user": 2,
    "llamaparse_webhook_secret": SecretStr(SECRET),
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    sent: int  # body bytes the client got into its socket before it stopped or was stopped
    closed: bool  # the server closed the connection after answering


async def send_raw(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    total: int,
    *,
    chunked: bool = False,
    block: bytes = b"x" * 65536,
) -> Answer:
    """Send `total` body bytes (Content-Length, or chunked) while reading the answer; stop
    sending as soon as it comes. `closed`: EOF (or a reset) followed the answer (within 30 s).

    Plain sockets, not asyncio streams: a failed send must not hide an answer that arrived."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    await loop.sock_sendall(sock, head.encode() + b"\r\n")
    sent = 0

    async def pump() -> None:
        nonlocal sent
        with contextlib.suppress(OSError):
            while sent < total:
                data = block[: min(len(block), total - sent)]
                framed = f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data
                await loop.sock_sendall(sock, framed)
                sent += len(data)
            if chunked:
                await loop.sock_sendall(sock, b"0\r\n\r\n")

    async def recv() -> bytes:
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65536), 60)
        except ConnectionResetError:  # closed with our unread bytes in its buffer: a reset
            return b""

    task = asyncio.create_task(pump())
    try:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = await recv()
            assert chunk, f"the connection closed without an answer after {raw!r}"
            raw += chunk
        head_raw, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head_raw.decode("latin-1").split("\r\n")
        got = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        length = int(got.get("content-length", 0))
        while len(rest) < length:
            chunk = await recv()
            assert chunk, "the connection closed in the middle of the answer"
            rest += chunk
        try:
            closed = rest[length:] == b"" and await recv() == b""
        except TimeoutError:
            closed = False
        body = json.loads(rest[:length]) if length else None
        return Answer(int(status_line.split()[1]), got, body, sent, closed)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


def counting_protocol(settings: Settings) -> type:
    """The API's own protocol class, counting the bytes it receives."""
    base = uvicorn_options(settings)["http"]

    class Counting(base):  # type: ignore[valid-type, misc]
        received: ClassVar[int] = 0

        def data_received(self, data: bytes) -> None:
            type(self).received += len(data)
            super().data_received(data)

    return Counting


@dataclass
class Edge:
    live: LiveServer
    settings: Settings
    protocol: Any

    @property
    def port(self) -> int:
        return self.live.port

    def received(self) -> int:
        return int(self.protocol.received)

    def reset(self) -> None:
        self.protocol.received = 0


StartEdge = Callable[..., Edge]


@pytest.fixture
def start_edge(api_settings: Settings) -> Iterator[StartEdge]:
    """Start the API under uvicorn with its limits (ACCESSA_API_*) on a free port."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> Edge:
        settings = api_settings.model_copy(update={**EDGE, **overrides})
        options = {**uvicorn_options(settings), "http": counting_protocol(settings)}
        live = LiveServer(create_app(settings, with_relay=False), **options).__enter__()
        servers.append(live)
        return Edge(live, settings, options["http"])

    yield start
    for live in servers:
        live.__exit__(None, None, None)


@pytest.fixture
def edge(start_edge: StartEdge) -> Edge:
    return start_edge()


ANONYMOUS_ROUTES = {
    "documents": (
        "POST",
        "/api/v2/documents",
        {"Content-Type": "multipart/form-data; boundary=b"},
        "not_authenticated",
    ),
    "upload": ("POST", "/api/v2/upload", {"Content-Type": "application/json"}, "not_authenticated"),
    "webhook": (
        "POST",
        "/api/v2/webhooks/llamaparse",
        {"Content-Type": "application/json"},
        "invalid_signature",
    ),
    "webhook-bad-header": (
        "POST",
        "/api/v2/webhooks/llamaparse",
        {
            "Content-Type": "application/json",
            "X-Llamaparse-Timestamp": "1",
            "X-Llamaparse-Signature": "sha256=nothex",
        },
        "invalid_signature",
    ),
    "signed-url": ("PUT", f"/api/v2/upload/{uuid.uuid4()}/content", {}, "signature_required"),
}


@pytest.mark.parametrize("route", list(ANONYMOUS_ROUTES))
async def test_anonymous_24mb_body_is_401_after_at_most_1mb_read(edge: Edge, route: str) -> None:
    method, path, headers, code = ANONYMOUS_ROUTES[route]
    answer = await send_raw(edge.port, method, path, headers, 24 * MB)
    assert answer.status == 401, answer.body
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["correlation_id"]
    assert answer.headers.get("connection") == "close"
    assert answer.closed, "the server must close the connection rather than read the body"
    assert edge.received() < 1 * MB, f"the server read {edge.received()} bytes"


async def test_anonymous_chunked_body_is_401_after_at_most_1mb_read(edge: Edge) -> None:
    answer = await send_raw(edge.port, "POST", "/api/v2/documents", {}, 24 * MB, chunked=True)
    assert (answer.status, answer.body["error"]["code"]) == (401, "not_authenticated")
    assert answer.closed
    assert edge.received() < 1 * MB


async def test_upload_without_a_token_is_401_not_422(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=edge.live.url) as client:
        invalid = await client.post("/api/v2/upload", json={"filename": ""})
        valid = await client.post(
            "/api/v2/upload", json={"filename": "a.pdf", "bytes": 10, "sha256": "0" * 64}
        )
    for response in (invalid, valid):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_bad_token_is_401_before_the_body(edge: Edge) -> None:
    headers = {"Authorization": "Bearer not-a-jwt", "Content-Type": "application/json"}
    answer = await send_raw(edge.port, "POST", "/api/v2/upload", headers, 24 * MB)
    assert (answer.status, answer.body["error"]["code"]) == (401, "invalid_token")
    assert answer.closed and edge.received() < 1 * MB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_json_body_over_64kb_is_413_without_reading_it_all(
    edge: Edge, user: uuid.UUID, chunked: bool
) -> None:
    headers = {**bearer(edge.settings, user), "Content-Type": "application/json"}
    answer = await send_raw(edge.port, "POST", "/api/v2/upload", headers, 8 * MB, chunked=chunked)
    assert (answer.status, answer.body["error"]["code"]) == (413, "file_too_large"), answer.body
    assert str(64 * 1024) in answer.body["error"]["message"]
    assert answer.closed
    assert edge.received() < 1 * MB, f"the server read {edge.received()} bytes"


async def test_json_body_under_the_cap_is_read_and_validated(edge: Edge, user: uuid.UUID) -> None:
    """The cap is the route's: a 60 KB JSON body is read whole (and found invalid: 422)."""
    async with httpx.AsyncClient(base_url=edge.live.url) as client:
        response = await client.post(
            "/api/v2/upload", headers=bearer(edge.settings, user), json={"filename": "x" * 60_000}
        )
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


def _signed_headers(body: bytes) -> dict[str, str]:
    import hmac

    ts = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "X-Llamaparse-Timestamp": ts,
        "X-Llamaparse-Signature": f"sha256={mac}",
        "Content-Type": "application/json",
    }


async def test_webhook_body_over_256kb_is_413_while_streaming(edge: Edge) -> None:
    """A well-formed, fresh signature header lets the body in, up to the webhook's cap."""
    answer = await send_raw(
        edge.port,
        "POST",
        "/api/v2/webhooks/llamaparse",
        _signed_headers(b"{}"),
        8 * MB,
        chunked=True,
    )
    assert (answer.status, answer.body["error"]["code"]) == (413, "file_too_large")
    assert str(256 * 1024) in answer.body["error"]["message"]
    assert answer.closed and edge.received() < 1 * MB


async def test_webhook_with_a_forged_hmac_under_the_cap_is_401(edge: Edge) -> None:
    body = json.dumps({"job_id": "llx-1", "status": "SUCCESS"}).encode()
    headers = _signed_headers(b"another body")
    async with httpx.AsyncClient(base_url=edge.live.url) as client:
        response = await client.post("/api/v2/webhooks/llamaparse", content=body, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_signature")


def _incoming(settings: Settings) -> list[Path]:
    folder = settings.storage_root / ".incoming"
    return list(folder.iterdir()) if folder.exists() else []


async def test_uploads_stream_to_storage_hashed_and_leave_no_staging_file(
    edge: Edge, user: uuid.UUID
) -> None:
    pdf = unique_pdf()
    auth = bearer(edge.settings, user)
    async with httpx.AsyncClient(base_url=edge.live.url, timeout=60) as client:
        one = await client.post(
            "/api/v2/documents",
            headers=auth,
            files={"note": (None, "ignored"), "file": ("p.pdf", pdf, "application/pdf")},
        )
        assert one.status_code == 202, one.text
        bad = await client.post(
            "/api/v2/documents",
            headers=auth,
            files={"file": ("x.pdf", b"GIF89a not a pdf", "application/pdf")},
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "not_pdf")
        none = await client.post("/api/v2/documents", headers=auth, files={"other": ("a", b"1")})
        assert (none.status_code, none.json()["error"]["code"]) == (422, "validation_error")
        two = unique_pdf()
        declared = await client.post(
            "/api/v2/upload",
            headers=auth,
            json={"filename": "two.pdf", "bytes": len(two), "sha256": sha256(two)},
        )
        assert declared.status_code == 202, declared.text
        put = await client.put(declared.json()["signed_url"], content=two)
        assert put.status_code == 200, put.text
    stored = sorted((edge.settings.storage_root / "raw" / str(user)).rglob("*.pdf"))
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in stored) == sorted(
        [sha256(pdf), sha256(two)]
    )
    assert _incoming(edge.settings) == []


async def test_an_oversized_upload_is_413_while_streaming(
    start_edge: StartEdge, user: uuid.UUID
) -> None:
    edge = start_edge(max_upload_mb=1.0)
    headers = {**bearer(edge.settings, user), "Content-Type": "multipart/form-data; boundary=b"}
    block = b"--b\r\nContent-Disposition: form-data; name=file; filename=a.pdf\r\n\r\n%PDF-"
    block += b"x" * (65536 - len(block))
    answer = await send_raw(
        edge.port, "POST", "/api/v2/documents", headers, 24 * MB, chunked=True, block=block
    )
    assert (answer.status, answer.body["error"]["code"]) == (413, "file_too_large")
    assert answer.closed and edge.received() < 3 * MB
    assert _incoming(edge.settings) == []


async def test_a_user_may_open_only_so_many_event_streams(edge: Edge, user: uuid.UUID) -> None:
    auth = bearer(edge.settings, user)
    pdf = unique_pdf()
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=edge.live.url, headers=auth, timeout=30)
        )
        declared = await client.post(
            "/api/v2/upload", json={"filename": "p.pdf", "bytes": len(pdf), "sha256": sha256(pdf)}
        )
        path = f"/api/v2/jobs/{declared.json()['job_id']}/events"
        first = await stack.enter_async_context(client.stream("GET", path))
        second = await stack.enter_async_context(client.stream("GET", path))
        assert (first.status_code, second.status_code) == (200, 200)
        third = await client.get(path)
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "too_many_streams"
        other = await client.get(path, headers=bearer(edge.settings, uuid.uuid4()))
        assert other.status_code == 404  # another user: their own cap, and not their job
        await first.aclose()

        async def slot_free() -> bool:
            async with client.stream("GET", path) as again:
                return again.status_code == 200

        assert await wait_for(slot_free, timeout=30, what="a closed stream to free its slot")


async def test_a_connection_that_never_finishes_its_headers_is_closed(edge: Edge) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        # The header timeout is 1 s: EOF must come; 30 s only bounds the wait.
        assert await asyncio.wait_for(reader.read(), 30) == b""
    finally:
        writer.close()
    async with httpx.AsyncClient(base_url=edge.live.url) as client:  # others still served
        assert (await client.get("/health")).status_code == 200


async def test_a_kept_alive_connection_stalling_on_its_next_headers_is_closed(edge: Edge) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /health HTTP/1.1\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert first.startswith(b"HTTP/1.1 200")
        rest = await asyncio.wait_for(reader.read(), 30)
        assert b"HTTP/1.1" not in rest.partition(b"}")[2]  # no second answer, just EOF
    finally:
        writer.close()


async def test_connections_past_the_concurrency_limit_get_503(start_edge: StartEdge) -> None:
    edge = start_edge(api_limit_concurrency=4, api_header_timeout_s=60.0)
    idle = [await asyncio.open_connection("127.0.0.1", edge.port) for _ in range(3)]
    try:
        state = edge.live.server.server_state

        async def accepted() -> bool:
            return len(state.connections) >= 3

        await wait_for(accepted, timeout=30, what="three idle connections accepted")
        async with httpx.AsyncClient(base_url=edge.live.url) as client:
            assert (await client.get("/health")).status_code == 503
        for _, writer in idle:
            writer.close()

        async def served() -> bool:
            async with httpx.AsyncClient(base_url=edge.live.url) as client:
                return (await client.get("/health")).status_code == 200

        assert await wait_for(served, timeout=30, what="a request once the others closed")
    finally:
        for _, writer in idle:
            writer.close()


# --- memory of a separate API process


def _reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


@pytest.fixture
async def api_process(api_settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    """`accessa run api`'s server (no relay) in its own process, with its own TMPDIR."""
    port = free_port()
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "ACCESSA_API_PORT": str(port),
        "ACCESSA_API_HOST": "127.0.0.1",
        "ACCESSA_TOPIC_PREFIX": api_settings.topic_prefix,
        "ACCESSA_RATE_LIMITS_ENABLED": "false",
        "ACCESSA_STORAGE_DIR": str(tmp_path / "storage"),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    code = (
        "from accessa.config import get_settings as g; from accessa.runtime.server import "
        "serve_asgi; from producer_api.main import create_app; from producer_api.core."
        "server import uvicorn_options as o; s = g(); serve_asgi(create_app(s, "
        "with_relay=False), s.api_host, s.api_port, 5, **o(s))"
    )
    with (tmp_path / "api.log").open("ab") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        async def up() -> bool:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{url}/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, timeout=90, what="the API process to serve")
        yield proc.pid, url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_rss_stays_flat_under_16_anonymous_24mb_bodies_in_parallel(
    api_process: tuple[int, str], tmp_path: Path
) -> None:
    pid, _ = api_process
    port = int(api_process[1].rsplit(":", 1)[1])
    # Warm the routes up once (imports, pools), then measure from here: VmHWM is reset.
    warm = await send_raw(
        port,
        "POST",
        "/api/v2/documents",
        {"Content-Type": "multipart/form-data; boundary=b"},
        2 * MB,
    )
    assert warm.status == 401
    _reset_peak(pid)
    before = _status(pid)["VmRSS"]
    routes = [ANONYMOUS_ROUTES[name] for name in ("documents", "upload", "webhook", "signed-url")]
    answers = await asyncio.gather(
        *(send_raw(port, method, path, headers, 24 * MB) for method, path, headers, _ in routes * 4)
    )
    assert [a.status for a in answers] == [401] * 16
    peak = _status(pid)["VmHWM"]
    assert peak - before < 30 * MB, f"peak RSS grew by {(peak - before) / MB:.1f} MB"
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing spooled
    assert not (tmp_path / "storage" / ".incoming").exists() or not list(
        (tmp_path / "storage" / ".incoming").iterdir()
    )
