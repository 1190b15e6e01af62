"""One-step upload (multipart) for simple clients and the CLI, and reading a document."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Request, Response, UploadFile

from producer_api import crud, ingest
from producer_api.core.config import DbDep, SettingsDep, StorageDep
from producer_api.core.errors import not_found
from producer_api.core.security import CurrentUser
from producer_api.models import DocumentAccepted, DocumentPublic, accepted
from producer_api.routes.common import AUTHED, QUOTA, errors
from producer_api.validation import check_size, sanitize_filename

router = APIRouter(prefix="/documents", tags=["documents"], dependencies=QUOTA)


@router.post(
    "", status_code=202, response_model=DocumentAccepted,
    responses={200: {"model": DocumentAccepted, "description": "Duplicate: your existing "
                     "document and its latest job."}, **AUTHED, **errors(409, 413)},
)  # fmt: skip
async def upload_document(
    file: Annotated[UploadFile, File(description="The PDF.")],
    request: Request, response: Response, user: CurrentUser, db: DbDep, settings: SettingsDep,
    storage: StorageDep,
) -> DocumentAccepted:  # fmt: skip
    """Upload a PDF in one request: validated, stored and queued for processing."""
    if file.size is not None:
        check_size(file.size, settings.max_upload_mb)
    data = await file.read()
    assert user.user_id is not None
    result = await ingest.upload_bytes(
        db=db, settings=settings, storage=storage, user_id=user.user_id,
        filename=sanitize_filename(file.filename or ""),
        correlation_id=request.state.correlation_id, data=data,
    )  # fmt: skip
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
