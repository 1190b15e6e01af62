"""Where the runtime drops below FastStream's subscriber to the aiokafka consumer under it:
the batch poll, the batch's records and consumer (for `settling`), and pausing a retry
partition until its first record is due."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.kafka.annotations import KafkaMessage


async def skip_decoding(_: Any) -> None:
    return None


async def poll_batch(subscriber: Any, consumer: Any) -> tuple[ConsumerRecord, ...]:
    """FastStream's batch poll without its pause after an empty poll: `getmany` has waited
    `batch_timeout_ms` for records already, and the pause (as long again) held back a record
    that arrived during it, on every hop of an idle pipeline."""
    batches = await consumer.getmany(
        timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records
    )
    return tuple(itertools.chain.from_iterable(batches.values()))


def records(msg: KafkaMessage) -> tuple[ConsumerRecord, ...]:
    """A batch subscriber's records."""
    return cast(tuple[ConsumerRecord, ...], msg.raw_message)


def consumer(msg: KafkaMessage) -> AIOKafkaConsumer:
    """The aiokafka consumer under the message: faststream's ConsumerProtocol has no pause,
    resume or commit of given offsets."""
    return cast(AIOKafkaConsumer, msg.consumer)


def hold(msg: KafkaMessage, tp: TopicPartition, offset: int, delay_s: float) -> None:
    """Pause a retry partition at its first record not yet due, until it is."""
    kafka = consumer(msg)
    kafka.seek(tp, offset)
    kafka.pause(tp)

    def resume() -> None:
        if tp in kafka.assignment():
            kafka.resume(tp)

    asyncio.get_running_loop().call_later(max(delay_s, 0.0), resume)
