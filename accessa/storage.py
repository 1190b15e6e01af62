"""Object storage: a local filesystem backend (default) and an S3-compatible one.

Keys are relative paths (`raw/{user_id}/{document_id}.pdf`, `parsed/{user_id}/{document_id}.md`)
built from ids only, never from user-supplied filenames.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from accessa.config import Settings


class ObjectNotFound(Exception):
    """The key does not exist in the store."""


def raw_key(user_id: uuid.UUID, document_id: uuid.UUID) -> str:
    return f"raw/{user_id}/{document_id}.pdf"


def verified_raw_key(user_id: uuid.UUID, document_id: uuid.UUID, sha256: str) -> str:
    """Where verified bytes of a presigned upload go: a key no URL was ever signed for, so a
    later PUT to the upload's URL cannot change what the parser reads."""
    return f"raw/{user_id}/{document_id}/{sha256}.pdf"


def parsed_key(user_id: uuid.UUID, document_id: uuid.UUID) -> str:
    return f"parsed/{user_id}/{document_id}.md"


RAW_PREFIX = "raw/"


@dataclass(frozen=True)
class ObjectInfo:
    """An object's key, size and last write, without its bytes."""

    key: str
    size: int
    modified: datetime


class Storage(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def put_file(self, key: str, path: Path) -> None: ...
    async def get(self, key: str, *, limit: int | None = None) -> bytes: ...
    async def head(self, key: str) -> ObjectInfo: ...
    def scan(self, prefix: str) -> AsyncIterator[list[ObjectInfo]]: ...
    async def exists(self, key: str) -> bool: ...
    async def delete(self, key: str) -> None: ...


class LocalStorage:
    """Files under a root folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _put_file(self, key: str, source: Path) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        shutil.move(source, tmp)  # a rename on the same filesystem, else a copy
        os.replace(tmp, path)

    def _get(self, key: str, limit: int | None) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                return f.read(-1 if limit is None else limit)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def _head(self, key: str) -> ObjectInfo:
        try:
            return self._info(key, self._path(key))
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def _list(self, prefix: str) -> list[ObjectInfo]:
        found = []
        for folder, _, names in os.walk(self._path(prefix)):
            for name in names:
                path = Path(folder) / name
                try:
                    found.append(self._info(path.relative_to(self.root).as_posix(), path))
                except FileNotFoundError:  # removed while we walked
                    continue
        return sorted(found, key=lambda o: o.key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def put_file(self, key: str, path: Path) -> None:
        """Move a finished file (a streamed upload) into place; `path` is gone afterwards."""
        await asyncio.to_thread(self._put_file, key, path)

    async def get(self, key: str, *, limit: int | None = None) -> bytes:
        """The object's bytes (its first `limit` bytes with a limit)."""
        return await asyncio.to_thread(self._get, key, limit)

    async def head(self, key: str) -> ObjectInfo:
        return await asyncio.to_thread(self._head, key)

    async def scan(self, prefix: str) -> AsyncIterator[list[ObjectInfo]]:
        """Every object under `prefix` (a folder), as one page."""
        yield await asyncio.to_thread(self._list, prefix)

    async def exists(self, key: str) -> bool:
        return self._path(key).exists()

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Storage:
    """Any S3-compatible store through boto3 (run in threads: boto3 is synchronous)."""

    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings.s3_bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id.get_secret_value(),
            aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
            # SigV4 signs a presigned PUT's Content-Length (SigV2 cannot): S3 refuses other sizes.
            config=Config(signature_version="s3v4"),
        )

    def ensure_bucket(self) -> None:
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            self.client.create_bucket(Bucket=self.bucket)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    async def put_file(self, key: str, path: Path) -> None:
        """Upload a finished file (multipart for large ones, from disk); `path` is removed."""

        def _upload() -> None:
            self.client.upload_file(str(path), self.bucket, key)
            path.unlink(missing_ok=True)

        await asyncio.to_thread(_upload)

    async def get(self, key: str, *, limit: int | None = None) -> bytes:
        """The object's bytes; with `limit`, a ranged GET of its first `limit` bytes at most
        (an object replaced by a larger one between a HEAD and this GET is never read whole)."""
        extra = {"Range": f"bytes=0-{limit - 1}"} if limit else {}

        def _get() -> bytes:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key, **extra)["Body"].read()
            except self.client.exceptions.NoSuchKey as exc:
                raise ObjectNotFound(key) from exc

        return await asyncio.to_thread(_get)

    async def head(self, key: str) -> ObjectInfo:
        def _head() -> ObjectInfo:
            try:
                meta = self.client.head_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise ObjectNotFound(key) from exc
                raise
            return ObjectInfo(key, meta["ContentLength"], meta["LastModified"])

        return await asyncio.to_thread(_head)

    async def scan(self, prefix: str) -> AsyncIterator[list[ObjectInfo]]:
        """Every object under `prefix`, a page (up to 1000) at a time."""
        pages = iter(
            self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        )
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            yield [
                ObjectInfo(o["Key"], o["Size"], o["LastModified"]) for o in page.get("Contents", [])
            ]

    async def exists(self, key: str) -> bool:
        def _head() -> bool:
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except self.client.exceptions.ClientError:
                return False

        return await asyncio.to_thread(_head)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key)

    def presigned_put_url(self, key: str, ttl_s: int, size: int) -> str:
        """A PUT URL for exactly `size` bytes (Content-Length is a signed header)."""
        return self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentLength": size},
            ExpiresIn=ttl_s,
        )


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.storage_root)
