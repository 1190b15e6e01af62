"""Event models, topic names and header names: defined once, imported everywhere."""

from schemas.events import (
    SCHEMA_VERSION,
    ChunksCreated,
    ChunksEmbedded,
    DocumentCompleted,
    DocumentParsed,
    DocumentUploaded,
    Event,
    decode_event,
)
from schemas.headers import Headers
from schemas.topics import STAGES, Stage, Topics

__all__ = [
    "SCHEMA_VERSION",
    "STAGES",
    "ChunksCreated",
    "ChunksEmbedded",
    "DocumentCompleted",
    "DocumentParsed",
    "DocumentUploaded",
    "Event",
    "Headers",
    "Stage",
    "Topics",
    "decode_event",
]
