"""The committed AsyncAPI document is the one FastStream generates from the event schemas."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from accessa.asyncapi import document
from schemas.topics import STAGES, Topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_committed_asyncapi_document_is_current() -> None:
    assert json.loads(DOC.read_text()) == document(version("accessa-ingest")), (
        "regenerate with: accessa asyncapi --output docs/asyncapi.json"
    )


def test_every_topic_and_event_is_documented() -> None:
    doc = document("test")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(Topics().all()) <= addresses
    assert {s.output for s in STAGES.values()} <= addresses
    assert set(doc["components"]["schemas"]) >= {
        "DocumentUploaded",
        "DocumentParsed",
        "ChunksCreated",
        "ChunksEmbedded",
        "DocumentCompleted",
    }
