"""Request and response bodies. `*Request` is what a client sends, `*Public` what it reads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import PageQuality, QualityFlag

JobStatus = Literal[
    "uploaded",
    "parse_queued",
    "parsed",
    "parse_validated",
    "chunking",
    "chunks_stored",
    "embedding_queued",
    "embedding_in_progress",
    "embeddings_stored",
    "complete",
    "failed_parse",
    "failed_chunking",
    "failed_embedding",
    "expired",
]
JobState = Literal["queued", "working", "retryable", "done", "deadletter"]
SHA256 = r"^[0-9a-fA-F]{64}$"
EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable reason.", examples=["pdf_encrypted"])
    message: str = Field(description="For humans.", examples=["the PDF is password-protected"])
    correlation_id: str | None = Field(description="Echo of X-Correlation-ID.")


class ErrorResponse(BaseModel):
    """Every error, whatever the status."""

    error: ErrorDetail


class UploadRequest(BaseModel):
    """Declares a PDF before its bytes are PUT to the returned signed URL."""

    model_config = ConfigDict(populate_by_name=True)

    filename: str = Field(
        min_length=1,
        max_length=1024,
        examples=["policy-2024.pdf"],
        description="Display name; sanitised, never used as a path.",
    )
    size: int = Field(alias="bytes", ge=1, description="Exact size in bytes.", examples=[48213])
    sha256: str = Field(
        pattern=SHA256, description="Hex SHA-256 of the bytes.", examples=[EXAMPLE_SHA256]
    )
    mime: str = Field(
        "application/pdf",
        description="Only application/pdf is accepted.",
        examples=["application/pdf"],
    )


class UploadAccepted(BaseModel):
    """A document and its job; PUT the bytes to `signed_url` before `upload_expires_at`."""

    job_id: uuid.UUID
    document_id: uuid.UUID
    signed_url: str | None = Field(
        description="Where to PUT the bytes; null when the bytes are already in.",
        examples=["http://127.0.0.1:8000/api/v2/upload/<job>/content?expires=…&signature=…"],
    )
    upload_expires_at: datetime | None = Field(description="When signed_url stops working.")
    duplicate: bool = Field(False, description="True: an existing document of yours, no new job.")


class DocumentAccepted(BaseModel):
    """The job of an uploaded document (new, or the latest one of a duplicate)."""

    job_id: uuid.UUID
    document_id: uuid.UUID
    status: JobStatus = Field(examples=["uploaded"])
    stage: str = Field(examples=["validated"])
    duplicate: bool = Field(False, description="True: an existing document of yours, no new job.")


class JobQuality(BaseModel):
    """How readable the parsed document is: flags, each with its reason in words, and the
    per page figures behind them."""

    flags: list[QualityFlag] = Field(examples=[["low_ocr_confidence"]])
    reasons: list[str] = Field(
        examples=[["OCR read page 1 of 1 with low confidence (lowest mean 0.70, below 0.85): …"]]
    )
    pages: list[PageQuality]


class JobPublic(BaseModel):
    """Where a job is in the pipeline and what it has cost so far."""

    job_id: uuid.UUID
    document_id: uuid.UUID
    filename: str = Field(examples=["policy-2024.pdf"])
    status: JobStatus
    state: JobState
    stage: str = Field(description="User-facing stage label.", examples=["chunked"])
    progress: int = Field(ge=0, le=100, description="Percent.", examples=[55])
    ocr: dict[str, int] | None = Field(
        None,
        description="While scanned pages are OCR'd: pages_done, pages_total.",
        examples=[{"pages_done": 4, "pages_total": 12}],
    )
    stage_times: dict[str, datetime] = Field(description="When each stage was reached.")
    pages: int | None = None
    chunk_count: int | None = None
    vector_count: int | None = None
    retry_count: int = 0
    last_error: dict[str, Any] | None = Field(
        None, examples=[{"stage": "parser", "code": "empty_markdown", "message": "…"}]
    )
    correlation_id: str
    trace_id: str | None = Field(
        None, description="OpenTelemetry trace of the job's latest run (tracing on only)."
    )
    cost_usd: float = Field(0.0, description="Embedding spend so far.")
    embed_tokens: int = 0
    quality: JobQuality | None = Field(
        None, description="Set once parsed (local parser): is the document readable?"
    )
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


class JobList(BaseModel):
    """One page of the caller's jobs, newest first."""

    items: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class DocumentPublic(BaseModel):
    document_id: uuid.UUID
    filename: str
    sha256: str
    size: int = Field(description="Bytes.")
    mime: str
    pages: int | None = None
    created_at: datetime
    latest_job_id: uuid.UUID | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    process: str = "api"


class Ready(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(examples=[{"postgres": True, "kafka": True}])
    reasons: dict[str, str] | None = Field(
        None,
        description="Why each failed check failed, in one line.",
        examples=[{"kafka": "Kafka SASL authentication failed (wrong username or password)"}],
    )


def job_public(row: Any) -> JobPublic:
    """A job row (joined with its document) as the API shows it."""
    return JobPublic(
        job_id=row["job_id"],
        document_id=row["document_id"],
        filename=row["filename"],
        status=row["status"],
        state=row["state"],
        stage=row["stage"],
        progress=int((row["progress"] or {}).get("percent", 0)),
        ocr=(row["progress"] or {}).get("ocr"),
        stage_times=row["stage_times"] or {},
        pages=row["pages"],
        chunk_count=row["chunk_count"],
        vector_count=row["vector_count"],
        retry_count=row["retry_count"],
        last_error=row["last_error"],
        correlation_id=row["correlation_id"],
        trace_id=row.get("trace_id"),
        cost_usd=float(row["cost_usd"]),
        embed_tokens=row["embed_tokens"],
        quality=row.get("quality"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
    )


def accepted(row: Any, *, duplicate: bool) -> DocumentAccepted:
    return DocumentAccepted(
        job_id=row["job_id"],
        document_id=row["document_id"],
        status=row["status"],
        stage=row["stage"],
        duplicate=duplicate,
    )
