"""Two-step upload: declare (POST /upload), PUT the bytes to the signed URL, and for the S3
backend confirm with POST /upload/{job_id}/complete."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from accessa.config import Settings
from accessa.storage import S3Storage, Storage
from producer_api import crud, ingest, ratelimit
from producer_api.core.body import stage_raw, staging_dir
from producer_api.core.config import DbDep, PoolDep, SettingsDep, StorageDep
from producer_api.core.errors import ApiError, not_found
from producer_api.core.security import CurrentUser, check_upload_signature, sign_upload
from producer_api.models import DocumentAccepted, UploadAccepted, UploadRequest, accepted
from producer_api.routes.common import AUTHED, QUOTA, errors
from producer_api.validation import check_mime, check_size, sanitize_filename

router = APIRouter(tags=["uploads"])
PDF_BODY = {
    "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    "required": True,
}


def _signed_url(
    request: Request, settings: Settings, storage: Storage, job: asyncpg.Record
) -> tuple[str | None, datetime | None]:
    """(url, expires_at) for PUTting the bytes of a job that is waiting for them."""
    if job["stage"] != crud.AWAITING_BYTES:
        return None, None
    expires = int(time.time()) + settings.signed_url_ttl_s
    if isinstance(storage, S3Storage):
        url = storage.presigned_put_url(job["raw_path"], settings.signed_url_ttl_s, job["size"])
    else:
        signature = sign_upload(settings, job["job_id"], expires)
        base = request.url_for("put_upload_content", job_id=str(job["job_id"]))
        url = str(base.include_query_params(expires=expires, signature=signature))
    return url, datetime.fromtimestamp(expires, UTC)


@router.post(
    "/upload",
    status_code=202,
    response_model=UploadAccepted,
    dependencies=QUOTA,
    responses={
        200: {
            "model": UploadAccepted,
            "description": "Duplicate: your existing document and its latest job.",
        },
        **AUTHED,
        **errors(409, 413, 415),
    },
)
async def declare_upload(
    body: UploadRequest,
    request: Request,
    response: Response,
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> UploadAccepted:
    """Declare a PDF; PUT its bytes to `signed_url` before `upload_expires_at`."""
    check_mime(body.mime)
    check_size(body.size, settings.max_upload_mb)
    assert user.user_id is not None
    doc = ingest.Declared(
        user.user_id,
        sanitize_filename(body.filename),
        body.size,
        body.sha256.lower(),
        "application/pdf",
        request.state.correlation_id,
    )
    result = await ingest.create(db=db, settings=settings, storage=storage, doc=doc)
    if result.duplicate:
        response.status_code = 200
    url, expires_at = _signed_url(request, settings, storage, result.job)
    return UploadAccepted(
        job_id=result.job["job_id"],
        document_id=result.job["document_id"],
        signed_url=url,
        upload_expires_at=expires_at,
        duplicate=result.duplicate,
    )


@router.put(
    "/upload/{job_id}/content",
    name="put_upload_content",
    response_model=DocumentAccepted,
    openapi_extra={"requestBody": PDF_BODY},
    responses=errors(400, 401, 403, 404, 409, 410, 413, 422, 429),
)
async def put_upload_content(
    job_id: uuid.UUID,
    expires: Annotated[int, Query(description="Epoch seconds the URL is valid until.")],
    signature: Annotated[str, Query(max_length=128, description="HMAC-SHA256, hex.")],
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> DocumentAccepted:
    """The signed URL of the local storage backend: the bytes of a declared upload."""
    check_upload_signature(settings, job_id, expires, signature)
    if isinstance(storage, S3Storage):
        raise ApiError(409, "use_presigned_url", "this deployment uploads to S3 directly")
    if settings.rate_limits_enabled:
        limit = ratelimit.limits(settings)["requests"]
        await ratelimit.hit(pool, bucket=f"req:PUT content:{job_id}", limit=limit)
    job = await crud.get_job(conn=pool, job_id=job_id)
    if job is None:
        raise not_found("job")
    ingest.check_waiting(job)  # 409/410 before the bytes are read
    staged = await stage_raw(request, staging_dir(settings), settings.max_upload_mb)
    try:
        fresh = await ingest.receive(
            pool=pool, settings=settings, storage=storage, job=job, data=staged, store=True
        )
    finally:
        staged.discard()  # kept ones were moved into the store already
    return accepted(fresh, duplicate=False)


@router.post(
    "/upload/{job_id}/complete",
    response_model=DocumentAccepted,
    dependencies=QUOTA,
    responses={**AUTHED, **errors(400, 404, 409, 410, 413)},
)
async def complete_upload(
    job_id: uuid.UUID,
    user: CurrentUser,
    db: DbDep,
    pool: PoolDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> DocumentAccepted:
    """After a PUT to an S3 presigned URL: verify the object's size (before reading it) and
    sha256, keep the verified bytes where the URL cannot reach, then emit."""
    async with db.tx() as conn:
        job = await crud.get_job(conn=conn, job_id=job_id)
    if job is None:
        raise not_found("job")
    ingest.check_waiting(job)
    data = await ingest.read_stored(storage, job, settings)
    fresh = await ingest.receive(
        pool=pool, settings=settings, storage=storage, job=job, data=data, store=False
    )
    return accepted(fresh, duplicate=False)
