"""The garbage collector tuned for a stage process: collect cycles per batch, not per record.

CPython's default runs a young-generation collection every 700 container allocations, a few
records apart here; the records of a poll live until its offsets commit, so each collection
promotes them and the older generations are rescanned with the process's whole heap. On the
no-op stage that was 13-26 % of its CPU (`bench/bench_runtime.py`, the same run with and
without); raw aiokafka, holding nothing between records, gained nothing. Reference counting
still frees every acyclic object at once; only cycles wait, at most `THRESHOLDS[0]`
allocations' worth.
"""

from __future__ import annotations

import gc

THRESHOLDS = (100_000, 50, 100)  # young, middle, old (CPython's default: 700, 10, 10)


def tune() -> None:
    """Set the thresholds; once per process, before the first poll."""
    gc.set_threshold(*THRESHOLDS)
