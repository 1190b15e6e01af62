"""How `upload --wait` reads a job's event stream, byte for byte, from a local HTTP server that
speaks the API's SSE framing: heartbeats dispatch nothing, a dropped stream resumes with
`Last-Event-ID`, and a stream that keeps breaking gives up (the caller then polls)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from accessa.cli.client import _STREAM_TRIES, _follow

JOB = "0b7c1c5e-0000-4000-8000-000000000001"


def _event(event_id: int, stage: str) -> bytes:
    data = {"id": event_id, "status": stage, "stage": stage, "progress": event_id * 10}
    return f"id: {event_id}\nevent: advanced\ndata: {json.dumps(data)}\n\n".encode()


END = (
    b'event: end\ndata: {"job_id": "' + JOB.encode() + b'", "state": "done", '
    b'"status": "complete", "stage": "complete", "progress": 100}\n\n'
)


class Script:
    """What each successive connection to the events route sends, and the Last-Event-ID of each."""

    def __init__(self, *bodies: bytes) -> None:
        self.bodies = list(bodies)
        self.last_event_ids: list[str | None] = []


@pytest.fixture
def serve() -> Iterator[Callable[[Script], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                script.last_event_ids.append(self.headers.get("Last-Event-ID"))
                body = script.bodies.pop(0) if script.bodies else b""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)  # then the connection closes: a drop unless `end` came

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def _run(url: str) -> tuple[dict | None, list[dict]]:
    seen: list[dict] = []
    with httpx.Client(base_url=url) as client:
        return _follow(client, JOB, seen.append, time.monotonic() + 30), seen


def test_heartbeats_between_events_dispatch_nothing(serve) -> None:
    heartbeat = b": heartbeat\n\n"
    script = Script(heartbeat + _event(1, "parsed") + heartbeat * 3 + _event(2, "chunking") + END)
    ended, seen = _run(serve(script))
    assert ended is not None and ended["status"] == "complete"
    assert [e["stage"] for e in seen] == ["parsed", "chunking"]


def test_a_dropped_stream_resumes_after_the_last_event_it_saw(serve) -> None:
    script = Script(
        _event(1, "parsed") + _event(2, "chunking") + b": heartbeat\n\n",
        _event(3, "embedding_queued") + END,
    )
    ended, seen = _run(serve(script))
    assert ended is not None and ended["state"] == "done"
    assert script.last_event_ids == [None, "2"]
    assert [e["id"] for e in seen] == [1, 2, 3]


def test_a_stream_that_keeps_breaking_gives_up_for_polling(serve) -> None:
    script = Script(*[b": heartbeat\n\n"] * (_STREAM_TRIES + 3))
    ended, seen = _run(serve(script))
    assert ended is None and seen == []
    assert len(script.last_event_ids) == _STREAM_TRIES
