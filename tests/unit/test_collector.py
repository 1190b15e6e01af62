"""A stage process collects cycles once per many records, not every few records."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from accessa.runtime import collector


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def _collections_while_holding(records: int) -> int:
    """Young collections run while a poll's worth of records (a few containers each) is held."""
    runs = 0

    def count(phase: str, info: dict[str, int]) -> None:
        nonlocal runs
        if phase == "start" and info["generation"] == 0:
            runs += 1

    gc.collect()
    gc.callbacks.append(count)
    try:
        held = [{"headers": {}, "event": [i], "work": [(i,)]} for i in range(records)]
    finally:
        gc.callbacks.remove(count)
    assert len(held) == records
    return runs


def test_a_poll_of_records_triggers_no_collection_once_tuned(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's default
    assert _collections_while_holding(256 * 4) > 4  # one every few records
    collector.tune()
    assert gc.get_threshold() == collector.THRESHOLDS
    assert _collections_while_holding(256 * 4) == 0
