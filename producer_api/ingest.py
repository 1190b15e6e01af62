"""The upload flows, in the order that keeps them atomic (the retry: producer_api.job_retry).

New upload, one transaction: insert the document (`ON CONFLICT (user_id, sha256) DO NOTHING`
decides duplicates, even for concurrent identical uploads) → count the daily quota (its
counter row also serialises one user's uploads) → check active jobs → insert the job →
store the bytes → outbox row. A duplicate rolls all of it back and re-reads the winner.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from accessa.config import Settings
from accessa.db import user_transaction
from accessa.storage import ObjectNotFound, Storage, raw_key, verified_raw_key
from producer_api import crud, outbox, ratelimit
from producer_api.core.body import Staged
from producer_api.core.config import Db
from producer_api.core.errors import ApiError
from producer_api.validation import PdfInfo, check_size, validate_pdf
from schemas.events import DocumentUploaded

log = logging.getLogger("accessa.api")


@dataclass(frozen=True)
class Accepted:
    job: asyncpg.Record
    duplicate: bool


@dataclass(frozen=True)
class Declared:
    user_id: uuid.UUID
    filename: str
    size: int
    sha256: str
    mime: str
    correlation_id: str


class _Duplicate(Exception):
    pass


async def create(
    *,
    db: Db,
    settings: Settings,
    storage: Storage,
    doc: Declared,
    data: bytes | Staged | None = None,
    pages: int | None = None,
) -> Accepted:
    """A new document + job (validated and emitted when `data` is given), or the duplicate."""
    document_id, job_id = uuid.uuid4(), uuid.uuid4()
    path = raw_key(doc.user_id, document_id)
    try:
        async with outbox.transaction(db.tx(), settings) as tx:
            conn = tx.conn
            if not await crud.insert_document(
                conn=conn,
                document_id=document_id,
                user_id=doc.user_id,
                sha256=doc.sha256,
                size=doc.size,
                filename=doc.filename,
                mime=doc.mime,
                raw_path=path,
                pages=pages,
            ):
                raise _Duplicate
            job = await _new_job(conn, settings, doc, document_id, job_id, data is not None)
            if data is not None:
                await _store(storage, path, data)
                await tx.enqueue(uploaded_event(job_id, document_id, path, doc))
        return Accepted(job, duplicate=False)
    except _Duplicate:
        async with db.tx() as conn:
            existing = await crud.document_by_sha(conn=conn, user_id=doc.user_id, sha256=doc.sha256)
            latest = existing and await crud.latest_job(
                conn=conn, document_id=existing["document_id"]
            )
        if not latest:
            raise ApiError(409, "conflict", "the document is being removed; retry") from None
        if latest["status"] == "expired":
            renewed = await _renew(
                db=db,
                settings=settings,
                storage=storage,
                doc=doc,
                document_id=latest["document_id"],
                data=data,
                pages=pages,
            )
            if renewed is not None:
                return renewed
        return Accepted(latest, duplicate=True)
    except Exception:
        if data is not None:
            await _forget_orphan(db, storage, path)
        raise


async def _forget_orphan(db: Db, storage: Storage, key: str) -> None:
    """After a failed upload transaction: delete its new raw object unless a row names it (a
    commit whose answer was lost may have landed). Best effort: `accessa storage gc` reclaims
    what this cannot (Postgres or storage down)."""
    try:
        async with db.tx() as conn:
            named = await conn.fetchval("SELECT 1 FROM documents WHERE raw_path = $1", key)
        if not named:
            await storage.delete(key)
    except Exception:  # the caller's error is the one to report
        log.warning("could not remove the orphan raw object %s; storage gc will", key)


async def _renew(
    *,
    db: Db,
    settings: Settings,
    storage: Storage,
    doc: Declared,
    document_id: uuid.UUID,
    data: bytes | Staged | None,
    pages: int | None,
) -> Accepted | None:
    """A new job for a document whose last upload expired before its bytes came (declared
    again, or now uploaded in one step); None if another request renewed it first."""
    async with outbox.transaction(db.tx(), settings) as tx:
        conn = tx.conn
        await conn.execute("SELECT 1 FROM documents WHERE document_id = $1 FOR UPDATE", document_id)
        latest = await crud.latest_job(conn=conn, document_id=document_id)
        if latest is None or latest["status"] != "expired":
            return None
        job = await _new_job(conn, settings, doc, document_id, uuid.uuid4(), data is not None)
        if data is not None:
            await conn.execute(
                "UPDATE documents SET pages = $2, updated_at = now() WHERE document_id = $1",
                document_id,
                pages,
            )
            await _store(storage, job["raw_path"], data)
            # The document's own name and type: those of its first upload, as its row holds.
            await tx.enqueue(
                uploaded_event(job["job_id"], document_id, job["raw_path"], declared_of(job))
            )
    return Accepted(job, duplicate=False)


async def _store(storage: Storage, key: str, data: bytes | Staged) -> None:
    if isinstance(data, Staged):
        await storage.put_file(key, data.path)
    else:
        await storage.put(key, data)


async def _validate(data: bytes | Staged, settings: Settings) -> PdfInfo:
    """The PDF's info or ApiError 422, in a worker thread (a staged file is read there)."""

    def run() -> PdfInfo:
        raw = data.path.read_bytes() if isinstance(data, Staged) else data
        return validate_pdf(raw, settings.pdf_max_expanded_bytes)

    return await asyncio.to_thread(run)


async def upload_staged(
    *,
    db: Db,
    settings: Settings,
    storage: Storage,
    user_id: uuid.UUID,
    filename: str,
    correlation_id: str,
    staged: Staged,
) -> Accepted:
    """The one-step upload of a streamed file: validate, then `create` with it."""
    check_size(staged.size, settings.max_upload_mb)
    info = await _validate(staged, settings)
    doc = Declared(user_id, filename, staged.size, staged.sha256, "application/pdf", correlation_id)
    return await create(
        db=db, settings=settings, storage=storage, doc=doc, data=staged, pages=info.pages
    )


async def upload_bytes(
    *,
    db: Db,
    settings: Settings,
    storage: Storage,
    user_id: uuid.UUID,
    filename: str,
    correlation_id: str,
    data: bytes,
) -> Accepted:
    """The one-step upload: validate, then `create` with the bytes."""
    check_size(len(data), settings.max_upload_mb)
    info = await asyncio.to_thread(validate_pdf, data, settings.pdf_max_expanded_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    doc = Declared(user_id, filename, len(data), sha256, "application/pdf", correlation_id)
    return await create(
        db=db, settings=settings, storage=storage, doc=doc, data=data, pages=info.pages
    )


async def receive(
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    storage: Storage,
    job: asyncpg.Record,
    data: bytes | Staged,
    store: bool,
) -> asyncpg.Record:
    """The bytes of a waiting two-step job: verify against the declaration, store, emit.

    A PDF that fails validation although it matches its declaration can never succeed:
    its document and job are removed. A size/sha256 mismatch keeps them for another try.
    """
    check_waiting(job)
    size = data.size if isinstance(data, Staged) else len(data)
    digest = data.sha256 if isinstance(data, Staged) else hashlib.sha256(data).hexdigest()
    check_size(size, settings.max_upload_mb)
    if size != job["size"]:
        raise ApiError(400, "size_mismatch", f"got {size} bytes, declared {job['size']}")
    if digest != job["sha256"]:
        raise ApiError(400, "sha256_mismatch", "the bytes do not match the declared sha256")
    try:
        info = await _validate(data, settings)
    except ApiError:
        await crud.delete_document(conn=pool, document_id=job["document_id"])
        if not store:
            await storage.delete(job["raw_path"])
        raise
    path = job["raw_path"]
    if not store:  # S3: the presigned URL can overwrite its key until it expires, so the
        # verified bytes get a key of their own, named by their sha256 (a rerun writes the same)
        path = verified_raw_key(job["user_id"], job["document_id"], job["sha256"])
    if store or path != job["raw_path"]:
        await _store(storage, path, data)
    async with outbox.transaction(user_transaction(pool, job["user_id"]), settings) as tx:
        conn = tx.conn
        if await crud.mark_validated(conn=conn, job_id=job["job_id"], pages=info.pages) is None:
            check_waiting(await crud.get_job(conn=conn, job_id=job["job_id"]) or job)
            raise ApiError(409, "upload_already_completed", "this job already has its bytes")
        if path != job["raw_path"]:
            await crud.set_raw_path(conn=conn, document_id=job["document_id"], raw_path=path)
        fresh = await crud.get_job(conn=conn, job_id=job["job_id"])
        assert fresh is not None
        await tx.enqueue(uploaded_event(job["job_id"], job["document_id"], path, declared_of(job)))
    if path != job["raw_path"]:
        try:  # what the client PUT is no longer read; gc removes it if this fails
            await storage.delete(job["raw_path"])
        except Exception:
            log.warning("could not remove the upload object %s (storage gc will)", job["raw_path"])
    return fresh


def check_waiting(job: asyncpg.Record) -> None:
    """ApiError unless the job still waits for its bytes: 410 once expired, else 409."""
    if job["status"] == "expired":
        raise ApiError(
            410,
            "upload_expired",
            "the upload expired before its bytes arrived; declare it again for a new URL",
        )
    if job["stage"] != crud.AWAITING_BYTES:
        raise ApiError(409, "upload_already_completed", "this job already has its bytes")


async def read_stored(storage: Storage, job: asyncpg.Record, settings: Settings) -> bytes:
    """The object a client PUT to a presigned URL (S3 backend). Its size comes from a HEAD
    first: an oversize or wrong-size object is refused (413 / 400) without being read. Then
    at most the declared size is read, should the object be replaced in between."""
    try:
        info = await storage.head(job["raw_path"])
        check_size(info.size, settings.max_upload_mb)
        if info.size != job["size"]:
            raise ApiError(400, "size_mismatch", f"got {info.size} bytes, declared {job['size']}")
        return await storage.get(job["raw_path"], limit=job["size"])
    except ObjectNotFound as exc:
        raise ApiError(409, "upload_missing", "no bytes were uploaded for this job yet") from exc


def uploaded_event(
    job_id: uuid.UUID, document_id: uuid.UUID, raw_path: str, doc: Declared
) -> DocumentUploaded:
    """The parser's input for a job whose document's bytes are at `raw_path`."""
    return DocumentUploaded(
        job_id=job_id,
        document_id=document_id,
        user_id=doc.user_id,
        correlation_id=doc.correlation_id,
        event_id=DocumentUploaded.make_id(job_id),
        storage_path=raw_path,
        sha256=doc.sha256,
        size=doc.size,
        filename=doc.filename,
        mime=doc.mime,
    )


def declared_of(job: asyncpg.Record) -> Declared:
    """What a job row (joined with its document) says was declared."""
    return Declared(
        job["user_id"],
        job["filename"],
        job["size"],
        job["sha256"],
        job["mime"],
        job["correlation_id"],
    )


async def _new_job(
    conn: asyncpg.Connection,
    settings: Settings,
    doc: Declared,
    document_id: uuid.UUID,
    job_id: uuid.UUID,
    validated: bool,
) -> asyncpg.Record:
    """Charge the user's upload quota and active-job limit, then open a job for the document."""
    if settings.rate_limits_enabled:
        quota = ratelimit.limits(settings)["uploads"]
        await ratelimit.hit(conn, bucket=f"uploads:{doc.user_id}", limit=quota)
        await ratelimit.check_active_jobs(conn, settings=settings, user_id=doc.user_id)
    return await crud.insert_job(
        conn=conn,
        job_id=job_id,
        document_id=document_id,
        user_id=doc.user_id,
        correlation_id=doc.correlation_id,
        validated=validated,
    )
