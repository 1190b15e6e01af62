"""Decoded once: FastStream's parser reads the headers, and the runtime reuses them."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka.message import KafkaAckableMessage
from faststream.kafka.parser import AioKafkaBatchParser

from accessa.runtime.incoming import decode, parse_readable, readable_headers
from schemas.events import DocumentUploaded
from schemas.headers import Headers
from tests.utils import uploaded_event


def _record(offset: int, headers: list[tuple[str, bytes | None]]) -> ConsumerRecord:
    event = uploaded_event(correlation_id="from-the-event")
    value = event.to_bytes()
    return ConsumerRecord(
        "t", 0, offset, 0, 0, event.key(), value, None, len(event.key()), len(value), headers
    )


async def _parse(records: tuple[ConsumerRecord, ...]) -> KafkaAckableMessage:
    parser = AioKafkaBatchParser(msg_class=KafkaAckableMessage, regex=None)
    return await parse_readable(records, parser.parse_batch)


@pytest.mark.parametrize(
    ("bad", "kept"),
    [
        ((Headers.CORRELATION_ID, b"\xff\xfe"), {}),  # not UTF-8: dropped
        ((Headers.ATTEMPT, None), {Headers.ATTEMPT: ""}),  # a null value: empty
    ],
    ids=["garbled", "null"],
)
async def test_a_header_that_does_not_decode_costs_its_record_that_header_only(
    bad: tuple[str, bytes | None], kept: dict[str, str]
) -> None:
    good = _record(0, [(Headers.JOB_ID, b"j1")])
    odd = _record(1, [(Headers.JOB_ID, b"j2"), bad])
    msg = await _parse((good, odd))
    assert msg.batch_headers == [{Headers.JOB_ID: "j1"}, {Headers.JOB_ID: "j2", **kept}]
    pairs = zip(msg.raw_message, msg.batch_headers, strict=True)
    items = [decode(r, DocumentUploaded, 10_000, h) for r, h in pairs]
    assert [i.event is not None for i in items] == [True, True]
    assert items[1].correlation_id == "from-the-event"  # the garbled header's stand-in


async def test_decoding_with_the_parsers_headers_matches_reading_them_and_leaves_them_alone() -> (
    None
):
    record = _record(0, [(Headers.CORRELATION_ID, b""), (Headers.ATTEMPT, b"3")])
    msg = await _parse((record,))
    parsed = msg.batch_headers[0]
    given = decode(record, DocumentUploaded, 10_000, parsed)
    read = decode(record, DocumentUploaded, 10_000, readable_headers(record))
    assert (
        given.headers
        == read.headers
        == {
            Headers.CORRELATION_ID: "from-the-event",
            Headers.ATTEMPT: "3",
        }
    )
    assert given.attempt == 3
    assert parsed == {Headers.CORRELATION_ID: "", Headers.ATTEMPT: "3"}  # not written to
