"""Shared test helpers: polling with a deadline, producing and reading topics, processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from accessa import kafka_clients
from accessa.config import Settings
from accessa.topic_scan import Record, partitions, scan
from schemas.events import DocumentUploaded, Event
from schemas.headers import Headers

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"  # CI clones main with shared/ beside it


async def wait_for(
    check: Callable[[], Awaitable[T | None]],
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


async def wait_quiet(
    settings: Settings,
    groups: dict[str, list[str]],
    outputs: list[str],
    *,
    quiet_s: float = 2.0,
    timeout: float = 60.0,
) -> None:
    """Until each consumer group (group -> its input topics) has committed the end of every
    input partition and nothing changed (commits, inputs, `outputs`) for `quiet_s` since.

    Waiting until N records and asserting N proves nothing about a late duplicate; after this,
    a count is final (as far as `quiet_s` reaches)."""
    inputs = {t for topics in groups.values() for t in topics}
    parts = {t: await partitions(settings, t) for t in inputs | set(outputs)}
    admin = kafka_clients.admin(settings)
    consumer = kafka_clients.consumer(settings)
    await admin.start()
    await consumer.start()
    seen: tuple[Any, ...] = ()
    since = time.monotonic()

    async def quiet() -> bool:
        nonlocal seen, since
        ends = await consumer.end_offsets([tp for tps in parts.values() for tp in tps])
        committed = {}
        for group, topics in groups.items():
            offsets = await admin.list_consumer_group_offsets(group)
            for tp in (tp for t in topics for tp in parts[t]):
                committed[group, tp] = max(offsets[tp].offset, 0) if tp in offsets else 0
        state = (sorted(ends.items()), sorted(committed.items()))
        if state != seen:
            seen, since = state, time.monotonic()
        caught_up = all(n >= ends[tp] for (_, tp), n in committed.items())
        return caught_up and time.monotonic() - since >= quiet_s

    try:
        await wait_for(
            quiet,
            timeout=timeout,
            interval=0.2,
            what=f"{sorted(groups)} caught up and {quiet_s}s quiet",
        )
    finally:
        await consumer.stop()
        await admin.close()


def token_claims(user: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    """The claims of a user's bearer token, valid for a minute; an override of None drops a
    claim."""
    now = int(time.time())
    claims = {
        "sub": str(user),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


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


async def produce_events(settings: Settings, topic: str, events: Sequence[Event]) -> None:
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
            [sys.executable, "-m", *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


@dataclass
class MockControl:
    """A running mock server (LlamaParse or OpenAI) and a client for its /_mock/ routes."""

    url: str
    control: httpx.AsyncClient

    async def configure(self, **knobs: object) -> None:
        (await self.control.post("/_mock/config", json=knobs)).raise_for_status()

    async def log(self) -> list[dict]:
        return (await self.control.get("/_mock/requests")).json()
