"""Consumer lag per partition (end offset - the group's committed offset) and the depth of
the stage's dead-letter topic, as metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from accessa.runtime import metrics
from accessa.topic_scan import partitions

if TYPE_CHECKING:
    from accessa.runtime.stage import StageRuntime

log = logging.getLogger("accessa.lag")


async def lag_reporter(runtime: StageRuntime[Any], interval_s: float = 10.0) -> None:
    """Every `interval_s`, publish the lag of the partitions this replica owns."""
    dlq = runtime.topics.dlq(runtime.stage.input)
    while True:
        with contextlib.suppress(Exception):
            dlq_parts = await partitions(runtime.settings, dlq)
            # The Kafka subscriber's aiokafka consumer: not on faststream's base subscriber type.
            consumer = runtime.broker.subscribers[0].consumer  # type: ignore[attr-defined]
            if consumer is not None and dlq_parts:
                ends = await consumer.end_offsets(dlq_parts)
                starts = await consumer.beginning_offsets(dlq_parts)
                metrics.DLQ_DEPTH.labels(dlq).set(sum(ends[tp] - starts[tp] for tp in dlq_parts))
        with contextlib.suppress(Exception):
            for sub in runtime.broker.subscribers:
                consumer = getattr(sub, "consumer", None)
                if consumer is None:
                    continue
                parts = list(consumer.assignment())
                if not parts:
                    continue
                ends = await consumer.end_offsets(parts)
                for tp in parts:
                    committed = await consumer.committed(tp) or 0
                    metrics.CONSUMER_LAG.labels(runtime.app.name, tp.topic, tp.partition).set(
                        max(ends.get(tp, 0) - committed, 0)
                    )
        await asyncio.sleep(interval_s)  # a reporting period, not synchronisation
