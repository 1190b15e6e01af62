"""Event models: deterministic ids and typed decode errors."""

from __future__ import annotations

import uuid

import pytest

from accessa.errors import PoisonMessage
from schemas.events import ChunksCreated, DocumentUploaded, decode_event
from schemas.topics import Topics
from tests.utils import uploaded_event


def test_event_ids_are_deterministic_per_type_job_and_version() -> None:
    job = uuid.uuid4()
    assert DocumentUploaded.make_id(job) == DocumentUploaded.make_id(job)
    assert ChunksCreated.make_id(job, "v1") != ChunksCreated.make_id(job, "v2")
    assert DocumentUploaded.make_id(job) != ChunksCreated.make_id(job, "v1")


def test_an_event_round_trips_through_bytes() -> None:
    event = uploaded_event()
    assert decode_event(DocumentUploaded, event.to_bytes()) == event
    assert event.key() == str(event.document_id).encode()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "empty_message"),
        (None, "empty_message"),
        (b"\xff\xfe not json", "not_json"),
        (b'{"schema_version": 2}', "wrong_schema_version"),
        (b'{"schema_version": 1}', "invalid_event"),
        (b"[1, 2, 3]", "invalid_event"),
    ],
)
def test_malformed_records_raise_a_typed_poison_error(raw: bytes | None, code: str) -> None:
    with pytest.raises(PoisonMessage) as info:
        decode_event(DocumentUploaded, raw)
    assert info.value.code == code


def test_topics_include_retry_and_dead_letter_topics_for_every_stage_input() -> None:
    names = Topics("p-", retry_attempts=2).all()
    assert "p-uploaded.retry.2" in names and "p-embedded.dlq" in names
    assert "p-uploaded.retry.3" not in names
    assert len(names) == len(set(names)) == 5 + 4 * 3
