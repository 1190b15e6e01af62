"""The soak's lag probe (bench/bench_soak.py) on the real broker: records no group has consumed
are lag, and a group's committed offset takes them off."""

from __future__ import annotations

from aiokafka import TopicPartition

from accessa import kafka_clients
from accessa.config import Settings
from accessa.topics import topics_for
from bench.bench_soak import LagProbe
from schemas.topics import STAGES


async def test_lag_is_what_each_stage_group_has_not_committed(topics: Settings) -> None:
    topic = topics_for(topics).name(STAGES["chunker"].input)
    producer = kafka_clients.producer(topics, acks="all")
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(topic, b"x", key=b"k", partition=0)
    finally:
        await producer.stop()
    async with LagProbe(topics) as probe:
        assert await probe.sample() == {"parser": 0, "chunker": 5, "embedder": 0, "finalizer": 0}
        group = f"{topics.topic_prefix}{topics.group_prefix}chunker"
        consumer = kafka_clients.consumer(topics, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.commit({TopicPartition(topic, 0): 3})
        finally:
            await consumer.stop()
        assert (await probe.sample())["chunker"] == 2
