"""Settling a batch: its outputs acknowledged, then its offsets committed, behind the next batch.

A main-topic batch settles in the background while the next one runs: that batch's poll,
lookups, handlers and database commit overlap this one's acks and offset commit, the two
waits a serial loop pays on every poll. Batches settle one at a time and in order: a batch
waits for the one before it before its own settle starts, and `close` waits for the last one,
so a graceful stop commits everything it finished.

A main batch's offsets are committed explicitly, from its own records: by then the consumer's
position may include the next batch. Retry batches settle inline and commit the consumer's
positions, which `polling.hold` has seeked back to each paused partition's first record due.

A batch that fails to settle rewinds its partitions itself (idle, no next batch would), and
the batch after it rewinds to the earlier of the two starts, so no offset is committed past an
unsettled record. Redelivered records are found committed and their stored outputs produced
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

log = logging.getLogger("accessa.runtime")


class Settler:
    """At most one batch settling in the background, and what to rewind if it fails."""

    def __init__(self) -> None:
        self.behind: asyncio.Task[None] | None = None
        self.behind_records: tuple[ConsumerRecord, ...] = ()
        self.closing = False

    async def settle(
        self,
        records: tuple[ConsumerRecord, ...],
        consumer: AIOKafkaConsumer,
        acks: Callable[[], Awaitable[None]],
        *,
        behind: bool,
    ) -> None:
        """Settle a batch after the one before it: in the background when `behind`."""
        await self._previous()
        job = self._settle(records, consumer, acks, _next_offsets(records) if behind else None)
        if behind and not self.closing:
            self.behind, self.behind_records = asyncio.ensure_future(job), records
        else:
            await job

    async def rewind(self, records: tuple[ConsumerRecord, ...], consumer: AIOKafkaConsumer) -> None:
        """A batch failed: rewind its partitions, and an unsettled batch before it, to their
        earliest records."""
        if self.behind is not None:
            await asyncio.wait([self.behind])  # its failure is ours to rewind, not to raise
            if self.behind.cancelled() or self.behind.exception() is not None:
                records = (*records, *self.behind_records)
            self.behind = None
        _seek_earliest(consumer, records)

    async def close(self, timeout_s: float | None = None) -> None:
        """No more settling behind; the last batch's settle finished, failed, or (still
        waiting after `timeout_s`, e.g. for a broker that is down) cancelled: its records are
        then delivered again, and found committed."""
        self.closing = True
        if self.behind is not None:
            _, pending = await asyncio.wait([self.behind], timeout=timeout_s)
            for task in pending:
                task.cancel()
                await asyncio.wait([task])

    async def _previous(self) -> None:
        """The batch before is settled; raises its failure (this batch then rewinds both)."""
        if self.behind is not None:
            behind, self.behind = self.behind, None
            try:
                await behind
            except BaseException:
                self.behind = behind  # for `rewind`, which takes the earlier start
                raise

    async def _settle(
        self,
        records: tuple[ConsumerRecord, ...],
        consumer: AIOKafkaConsumer,
        acks: Callable[[], Awaitable[None]],
        offsets: dict[TopicPartition, int] | None,
    ) -> None:
        """Acks, then `offsets` committed (None: the consumer's positions, which a retry batch
        has seeked back to its held records)."""
        try:
            await acks()
            await consumer.commit(offsets)
        except BaseException as exc:
            log.warning("batch not settled, its partitions rewound: %r", exc)
            _seek_earliest(consumer, records)
            raise


def _next_offsets(records: Iterable[ConsumerRecord]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


def _seek_earliest(consumer: AIOKafkaConsumer, records: Iterable[ConsumerRecord]) -> None:
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        earliest[tp] = min(earliest.get(tp, record.offset), record.offset)
    assigned = consumer.assignment()
    for tp, offset in earliest.items():
        if tp in assigned:  # a revoked partition is its new owner's, from the committed offset
            consumer.seek(tp, offset)
