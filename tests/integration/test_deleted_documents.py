"""An in-flight event for a deleted document is counted, logged and skipped; an event naming a
job that never existed (forged, or mixed up with another document) is still dead-lettered."""

from __future__ import annotations

import logging
import uuid

import pytest

from accessa.runtime.metrics import REGISTRY
from schemas.events import DocumentParsed
from schemas.headers import Headers
from tests.integration.conftest import Stages
from tests.utils import CORPUS, produce_events, read_topic, wait_for

pytestmark = pytest.mark.integration


def _deleted_count() -> float:
    labels = {"stage": "chunker", "outcome": "deleted"}
    return REGISTRY.get_sample_value("accessa_stage_messages_total", labels) or 0.0


def _parsed(job_id: uuid.UUID, document_id: uuid.UUID, user_id: uuid.UUID) -> DocumentParsed:
    return DocumentParsed(
        event_id=DocumentParsed.make_id(job_id),
        job_id=job_id,
        document_id=document_id,
        user_id=user_id,
        correlation_id=f"corr-{job_id}",
        parsed_path="parsed/x.md",
        parsed_sha256="0" * 64,
        pages=1,
        parser="test",
    )


async def test_an_event_for_a_deleted_document_is_skipped_and_a_forged_one_dead_lettered(
    stages: Stages,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = stages.settings.topic_prefix
    await stages.start("parser")
    sent = await stages.submit((CORPUS / "minimal-document.pdf").read_bytes())

    async def parsed() -> bool:
        return (await stages.job(sent.job_id))["status"] == "parse_validated"

    await wait_for(parsed, timeout=60, what="the document parsed")
    await stages.stop("parser")
    # The user deletes the document while its `parsed` event waits for the chunker.
    await stages.pool.execute("DELETE FROM documents WHERE document_id = $1", sent.document_id)
    forged = _parsed(uuid.uuid4(), uuid.uuid4(), sent.user_id)  # a job that never existed
    mixed_up = _parsed(sent.job_id, uuid.uuid4(), sent.user_id)  # the deleted job, wrong doc
    await produce_events(stages.settings, f"{prefix}parsed", [forged, mixed_up])

    before = _deleted_count()
    with caplog.at_level(logging.INFO, logger="accessa.runtime"):
        await stages.start("chunker")

        async def dead() -> list | None:
            records = await read_topic(stages.settings, f"{prefix}parsed.dlq")
            return records if len(records) >= 2 else None

        records = await wait_for(dead, timeout=60, what="two DLQ records")

        async def counted() -> bool:
            return _deleted_count() >= before + 1

        await wait_for(counted, timeout=30, what="the deleted document's event counted")
    assert _deleted_count() == before + 1
    codes = {r.headers[Headers.JOB_ID]: r.headers[Headers.ERROR_CODE] for r in records}
    assert codes == {str(forged.job_id): "unknown_job", str(sent.job_id): "unknown_job"}
    assert len(records) == 2  # the deleted document's own event is not among them
    skipped = [r for r in caplog.records if "was deleted" in r.getMessage()]
    assert len(skipped) == 1 and str(sent.job_id) in skipped[0].getMessage()
