"""Batches settling behind the next one (accessa/runtime/settling.py), on the real broker: one
partition, a consumer group of its own, two polled batches of three records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from accessa import kafka_clients
from accessa.config import Settings
from accessa.runtime.settling import Settler
from tests.utils import produce

pytestmark = pytest.mark.integration

BATCH = 3


@pytest.fixture
async def consumer(topics: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    topic = f"{topics.topic_prefix}uploaded"
    await produce(topics, topic, [b"%d" % i for i in range(2 * BATCH)], partition=0)
    consumer = kafka_clients.consumer(
        topics,
        topic,
        group_id=f"{topics.topic_prefix}settle-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    yield consumer
    await consumer.stop()


def tp_of(consumer: AIOKafkaConsumer) -> TopicPartition:
    return TopicPartition(next(iter(consumer.subscription())), 0)


async def poll(consumer: AIOKafkaConsumer, n: int = BATCH) -> tuple[ConsumerRecord, ...]:
    """The next `n` records (a batch as the stage polls it)."""
    records: list[ConsumerRecord] = []
    async with asyncio.timeout(30):
        while len(records) < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=n - len(records))
            records += [r for rs in batch.values() for r in rs]
    return tuple(records)


async def test_batches_settle_in_order_behind_the_next_and_close_commits_the_last(
    consumer: AIOKafkaConsumer,
) -> None:
    tp, settler = tp_of(consumer), Settler()
    first, second = await poll(consumer), await poll(consumer)
    order: list[object] = []

    async def first_acks() -> None:
        await consumer.committed(tp)  # a broker round trip: the second batch's turn, if unordered
        order.append("first acked")

    async def second_acks() -> None:
        order.append("second acked")
        order.append(await consumer.committed(tp))

    await settler.settle(first, consumer, first_acks, behind=True)  # returns at once
    await settler.settle(second, consumer, second_acks, behind=True)  # after the first
    await settler.close()
    # The second's acks began once the first batch had committed its own offsets.
    assert order == ["first acked", "second acked", BATCH]
    assert await consumer.committed(tp) == 2 * BATCH


async def test_a_batch_that_fails_to_settle_is_rewound_with_the_batch_after_it(
    consumer: AIOKafkaConsumer,
) -> None:
    tp, settler = tp_of(consumer), Settler()
    first, second = await poll(consumer), await poll(consumer)  # polled: position past both

    async def failing_acks() -> None:
        raise RuntimeError("an output was not acknowledged")

    async def acks() -> None:
        return None

    await settler.settle(first, consumer, failing_acks, behind=True)
    with pytest.raises(RuntimeError, match="not acknowledged"):
        await settler.settle(second, consumer, acks, behind=True)
    await settler.rewind(second, consumer)  # what the stage does when its batch raises
    assert await consumer.committed(tp) is None
    assert [r.offset for r in await poll(consumer, 2 * BATCH)] == list(range(2 * BATCH))


async def test_a_failed_settle_with_no_batch_after_it_rewinds_itself(
    consumer: AIOKafkaConsumer,
) -> None:
    """Idle, no next batch would find the failure: the settle rewinds its own partitions."""
    tp, settler = tp_of(consumer), Settler()
    first = await poll(consumer)

    async def failing_acks() -> None:
        raise RuntimeError("an output was not acknowledged")

    await settler.settle(first, consumer, failing_acks, behind=True)
    await settler.close()  # waits for it; a stop does not raise for it
    assert await consumer.committed(tp) is None
    assert [r.offset for r in await poll(consumer)] == [0, 1, 2]


async def test_a_retry_batch_settles_inline_and_commits_the_consumers_position(
    consumer: AIOKafkaConsumer,
) -> None:
    """Retry batches are positioned by seeks (`polling.hold`): the position is what commits."""
    tp, settler = tp_of(consumer), Settler()
    batch = await poll(consumer, 2 * BATCH)
    consumer.seek(tp, BATCH)  # held at its first record not yet due

    async def acks() -> None:
        return None

    await settler.settle(batch, consumer, acks, behind=False)
    assert await consumer.committed(tp) == BATCH


async def test_close_gives_up_on_a_settle_still_waiting_after_its_timeout(
    consumer: AIOKafkaConsumer,
) -> None:
    """A stop while the broker is down: the last batch's acks never come. The stop goes on
    after its grace period; nothing is committed and the batch is rewound, to be redelivered."""
    tp, settler = tp_of(consumer), Settler()
    first = await poll(consumer)
    never = asyncio.Event()

    async def acks_that_never_come() -> None:
        await never.wait()

    await settler.settle(first, consumer, acks_that_never_come, behind=True)
    await settler.close(timeout_s=0.5)
    assert settler.behind is not None and settler.behind.cancelled()
    assert await consumer.committed(tp) is None
    assert [r.offset for r in await poll(consumer)] == [0, 1, 2]
