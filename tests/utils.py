"""Shared test helpers: polling with a deadline, producing and reading topics, processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from accessa import kafka_clients
from accessa.config import Settings
from accessa.topic_scan import Record, scan
from schemas.events import DocumentUploaded
from schemas.headers import Headers

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"  # CI clones main with shared/ beside it


async def wait_for(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(interval)  # poll interval, the deadline decides


def uploaded_event(filename: str = "ok.pdf", **overrides: Any) -> DocumentUploaded:
    job_id = overrides.pop("job_id", uuid.uuid4())
    fields: dict[str, Any] = {
        "event_id": DocumentUploaded.make_id(job_id),
        "job_id": job_id,
        "document_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "correlation_id": f"corr-{uuid.uuid4().hex[:12]}",
        "storage_path": "raw/x.pdf",
        "sha256": "a" * 64,
        "size": 10,
        "filename": filename,
    }
    fields.update(overrides)
    return DocumentUploaded(**fields)


async def produce(
    settings: Settings,
    topic: str,
    values: list[bytes],
    *,
    keys: list[bytes | None] | None = None,
    headers: list[dict[str, str]] | None = None,
    partition: int | None = None,
) -> None:
    producer = kafka_clients.producer(settings, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(values):
            hdrs = [(k, v.encode()) for k, v in (headers[i] if headers else {}).items()]
            await producer.send_and_wait(
                topic, value, key=keys[i] if keys else None, headers=hdrs, partition=partition
            )
    finally:
        await producer.stop()


async def produce_events(settings: Settings, topic: str, events: list[DocumentUploaded]) -> None:
    await produce(
        settings,
        topic,
        [e.to_bytes() for e in events],
        keys=[e.key() for e in events],
        headers=[
            {Headers.CORRELATION_ID: e.correlation_id, Headers.JOB_ID: str(e.job_id)}
            for e in events
        ],
    )


async def read_topic(settings: Settings, topic: str) -> list[Record]:
    """Every record currently in `topic` (all partitions, from the beginning)."""
    return [record async for record in scan(settings, topic)]


def header_map(record: Record) -> dict[str, str]:
    return record.headers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m ...` with extra env, output to `log`."""
    full_env = {**os.environ, **env}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args], env=full_env, stdout=out, stderr=subprocess.STDOUT,
            cwd=ROOT,
        )  # fmt: skip


@dataclass
class MockControl:
    """A running mock server (LlamaParse or OpenAI) and a client for its /_mock/ routes."""

    url: str
    control: httpx.AsyncClient

    async def configure(self, **knobs: object) -> None:
        (await self.control.post("/_mock/config", json=knobs)).raise_for_status()

    async def log(self) -> list[dict]:
        return (await self.control.get("/_mock/requests")).json()
