"""Pydantic v2 models for every hop. Past-tense names; one topic carries one event type.

Event ids are deterministic (`Event.make_id`): a stage that re-emits after a crash emits the
same id, so the next stage's dedup-by-event-id makes the redelivery harmless.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import PoisonMessage

SCHEMA_VERSION: Final = 1
_EVENT_NS = uuid.UUID("6f1c1f38-2d0e-4d67-9a59-4b0a3e0f2c11")


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    topic: ClassVar[str] = ""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Bumped on breaking change.")
    event_id: uuid.UUID = Field(description="Deterministic id; consumers dedup on it.")
    job_id: uuid.UUID
    document_id: uuid.UUID = Field(description="Also the Kafka message key.")
    user_id: uuid.UUID
    correlation_id: str = Field(examples=["3b0c6c1e-…"])
    occurred_at: datetime = Field(default_factory=_now)

    @classmethod
    def make_id(cls, job_id: uuid.UUID, *parts: object) -> uuid.UUID:
        """Deterministic event id over the event type, the job and version parts."""
        name = "/".join([cls.__name__, str(job_id), *map(str, parts)])
        return uuid.uuid5(_EVENT_NS, name)

    def key(self) -> bytes:
        return str(self.document_id).encode()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class DocumentUploaded(Event):
    """A PDF is stored and its job is `uploaded` (topic `uploaded`)."""

    topic: ClassVar[str] = "uploaded"
    storage_path: str = Field(examples=["raw/<user>/<document>.pdf"])
    sha256: str = Field(min_length=64, max_length=64)
    size: int = Field(ge=1)
    filename: str
    mime: str = "application/pdf"


QualityFlag = Literal["low_ocr_confidence", "little_text_on_image_page", "no_text"]
"""What a job's `quality.flags` may hold (consumers/parser/quality.py says when each is set)."""


class PageQuality(BaseModel):
    """What one page yielded: the words of its text layer and of OCR, and how much of it is
    image. The parser's figures behind a job's `quality` summary."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    page: int = Field(ge=1, description="1-based page number.")
    text_words: int = Field(0, ge=0, description="Words in the page's text layer.")
    ocr_words: int = Field(0, ge=0, description="Words OCR kept (0: not OCR'd).")
    ocr_confidence: float | None = Field(
        None, ge=0, le=1, description="Mean confidence of the OCR words; null: not OCR'd."
    )
    image_coverage: float = Field(
        0.0, ge=0, le=1, description="Share of the page's area that images cover."
    )


class DocumentParsed(Event):
    """Markdown is stored and validated (topic `parsed`)."""

    topic: ClassVar[str] = "parsed"
    parsed_path: str = Field(examples=["parsed/<user>/<document>.md"])
    parsed_sha256: str = Field(min_length=64, max_length=64)
    pages: int = Field(ge=0)
    parser: str = Field(examples=["local:pypdfium2", "llamaparse"])
    page_stats: list[PageQuality] = Field(
        default_factory=list, description="Per page figures (local parser); empty otherwise."
    )
    chunker_version: str | None = Field(
        None, description="Version to build (a reprocess); unset = ACCESSA_CHUNKER_VERSION."
    )
    embed_model: str | None = Field(
        None, description="Model to embed with (a reprocess); unset = ACCESSA_EMBED_MODEL."
    )


class ChunksCreated(Event):
    """Chunks are in `document_chunk_buffer` (topic `chunked`)."""

    topic: ClassVar[str] = "chunked"
    chunker_version: str = Field(examples=["markdown-simple@1"])
    chunk_count: int = Field(ge=0)
    parsed_sha256: str
    embed_model: str | None = Field(
        None, description="Model to embed with (a reprocess); unset = ACCESSA_EMBED_MODEL."
    )


class ChunksEmbedded(Event):
    """Vectors are in `document_vector_buffer` (topic `embedded`)."""

    topic: ClassVar[str] = "embedded"
    chunker_version: str
    embed_model: str
    dimensions: int = Field(ge=1)
    chunk_count: int = Field(ge=0)
    parsed_sha256: str
    tokens: int = Field(0, ge=0)


class DocumentCompleted(Event):
    """The document is searchable (topic `completed`, for downstream readers)."""

    topic: ClassVar[str] = "completed"
    chunker_version: str
    embed_model: str
    chunk_count: int = Field(ge=0)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.topic: cls
    for cls in (DocumentUploaded, DocumentParsed, ChunksCreated, ChunksEmbedded, DocumentCompleted)
}


E = TypeVar("E", bound=Event)


def decode_event(model: type[E], raw: bytes | None) -> E:
    """Parse a record value into `model`, or raise `PoisonMessage` saying what is wrong."""
    if not raw:
        raise PoisonMessage("empty message value", code="empty_message")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise PoisonMessage(f"not JSON: {first['msg']}", code="not_json") from exc
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        code = "wrong_schema_version" if where == "schema_version" else "invalid_event"
        raise PoisonMessage(
            f"{model.__name__}: {where}: {first['msg']} ({exc.error_count()} error(s))", code=code
        ) from exc
