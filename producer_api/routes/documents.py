"""One-step upload (multipart) for simple clients and the CLI, and reading a document."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from producer_api import crud, ingest
from producer_api.core.body import stage_multipart, staging_dir
from producer_api.core.config import DbDep, SettingsDep, StorageDep
from producer_api.core.errors import not_found
from producer_api.core.security import CurrentUser
from producer_api.models import DocumentAccepted, DocumentPublic, accepted
from producer_api.routes.common import AUTHED, QUOTA, errors
from producer_api.validation import sanitize_filename

router = APIRouter(prefix="/documents", tags=["documents"], dependencies=QUOTA)


MULTIPART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "The PDF."}
                },
            }
        }
    },
}


@router.post(
    "",
    status_code=202,
    response_model=DocumentAccepted,
    openapi_extra={"requestBody": MULTIPART_BODY},
    responses={
        200: {
            "model": DocumentAccepted,
            "description": "Duplicate: your existing document and its latest job.",
        },
        **AUTHED,
        **errors(409, 413),
    },
)
async def upload_document(
    request: Request,
    response: Response,
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> DocumentAccepted:
    """Upload a PDF in one request (multipart, field `file`): validated, stored and queued.

    The file streams to storage as it arrives, hashed on the way; the caller was
    authenticated before a byte of it was read."""
    filename, staged = await stage_multipart(request, staging_dir(settings), settings.max_upload_mb)
    assert user.user_id is not None
    try:
        result = await ingest.upload_staged(
            db=db,
            settings=settings,
            storage=storage,
            user_id=user.user_id,
            filename=sanitize_filename(filename),
            correlation_id=request.state.correlation_id,
            staged=staged,
        )
    finally:
        staged.discard()  # kept ones were moved into the store already
    if result.duplicate:
        response.status_code = 200
    return accepted(result.job, duplicate=result.duplicate)


@router.get("/{document_id}", response_model=DocumentPublic, responses={**AUTHED, **errors(404)})
async def read_document(document_id: uuid.UUID, db: DbDep) -> DocumentPublic:
    """One of your documents (another user's is 404)."""
    async with db.tx() as conn:
        row = await crud.get_document(conn=conn, document_id=document_id)
    if row is None:
        raise not_found("document")
    return DocumentPublic(**{k: row[k] for k in DocumentPublic.model_fields})
