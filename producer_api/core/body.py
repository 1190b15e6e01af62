"""Request bodies read as they arrive: an upload goes to a file in `staging_dir`, hashed
(sha256) and counted on the way, never held whole in memory nor spooled by a form parser.

The request guard (`core.guard`) has checked the caller and armed the route's byte cap
before any of this runs; the cap here is the file's own (ACCESSA_MAX_UPLOAD_MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import Request

from accessa.config import Settings
from producer_api.core.errors import ApiError
from producer_api.validation import check_size


class BodyTooLarge(HTTPException):
    """A body grew past its route's cap while being read; FastAPI re-raises HTTPExceptions
    from body reading, so the error handlers render it as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


@dataclass(frozen=True)
class Staged:
    """An uploaded file on disk, with what was counted while it arrived."""

    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def staging_dir(settings: Settings) -> Path:
    """Where uploads stream to: beside the local store's objects, so that keeping one is a
    rename (S3: the file is then uploaded from there)."""
    return settings.storage_root / ".incoming"


# Received bytes are handed to a worker thread (hashed and written there) a MiB at a time:
# a thread hop per network read (~256 KiB) cost more CPU than the hashing and writing.
FLUSH_BYTES = 1024 * 1024


class _Sink:
    """One staging file: counted as it grows, hashed and appended to in a worker thread."""

    def __init__(self, staging_dir: Path, max_mb: float) -> None:
        # mkstemp, not NamedTemporaryFile: the file is ours to remove, and its wrapper cost
        # more than the open; the folder is made when missing, not checked on every upload.
        try:
            fd, name = tempfile.mkstemp(dir=staging_dir, prefix="upload-", suffix=".part")
        except FileNotFoundError:
            staging_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=staging_dir, prefix="upload-", suffix=".part")
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.max_mb = max_mb
        self.size = 0
        self.hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        check_size(self.size, self.max_mb)
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            chunks, self._pending, self._pending_bytes = self._pending, [], 0
            await asyncio.to_thread(self._append, chunks)

    def _append(self, chunks: list[bytes]) -> None:
        """In a worker thread: sha256 releases the GIL on large buffers, so the loop runs on."""
        for chunk in chunks:
            self.hash.update(chunk)
            self.file.write(chunk)

    @contextlib.asynccontextmanager
    async def staged(self) -> AsyncIterator[None]:
        """Writes what is pending and closes the file; removes it unless the block completed."""
        try:
            yield
            await self._flush()
        except BaseException:
            self.file.close()
            self.path.unlink(missing_ok=True)
            raise
        self.file.close()

    def result(self) -> Staged:
        return Staged(self.path, self.size, self.hash.hexdigest())


async def stage_raw(request: Request, staging_dir: Path, max_mb: float) -> Staged:
    """The request body (a PUT of the PDF itself) streamed to a staging file."""
    sink = _Sink(staging_dir, max_mb)
    async with sink.staged():
        async for chunk in request.stream():
            if chunk:
                await sink.write(chunk)
    return sink.result()


@dataclass
class _PartState:
    """What the multipart callbacks know of the part being read."""

    header: bytes = b""
    value: bytes = b""
    disposition: bytes = b""
    in_file: bool = False
    found: bool = False
    filename: str = ""


async def stage_multipart(
    request: Request, staging_dir: Path, max_mb: float, field: str = "file"
) -> tuple[str, Staged]:
    """(filename, staged file) of the `field` part of a multipart/form-data body, streamed.

    python-multipart's push parser hands us each part's bytes as they arrive; other parts
    are dropped, not buffered. 422 when the body has no such part."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(
            422, "validation_error", f"body: expected multipart/form-data with a `{field}` part"
        )
    sink = _Sink(staging_dir, max_mb)
    pending: list[bytes] = []
    state = _PartState()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.value += data[start:end]

    def on_header_end() -> None:
        if state.header.lower() == b"content-disposition":
            state.disposition = state.value
        state.header, state.value = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state.disposition)
        is_file = disp.get(b"name") == field.encode() and not state.found
        state.in_file = is_file
        if is_file:
            state.found = True
            state.filename = disp.get(b"filename", b"").decode("utf-8", "replace")
        state.disposition = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.in_file:
            pending.append(data[start:end])

    def on_part_end() -> None:
        state.in_file = False

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    async with sink.staged():
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if pending:
                    data = b"".join(pending)
                    pending.clear()
                    await sink.write(data)
            parser.finalize()
        except ValueError as exc:  # python-multipart's MultipartParseError is a ValueError
            raise ApiError(400, "bad_request", f"unreadable multipart body: {exc}") from exc
        if not state.found:
            raise ApiError(422, "validation_error", f"body.{field}: Field required")
    return state.filename, sink.result()
