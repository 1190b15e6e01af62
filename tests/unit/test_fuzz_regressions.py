"""Every input `make fuzz` kept (tests/data/fuzz_regressions/) ends cleanly: validation
accepts it or raises the API's error, the parser's capped worker returns or raises a
PipelineError, each step within bench/fuzz.py's 10 s watchdog."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.fuzz import REGRESSIONS, Target
from consumers.parser.sandbox import MemoryCappedWorker
from mocks.policy_pdf import make_policy_pdf

FILES = sorted(REGRESSIONS.glob("*.pdf"))


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    target = Target()
    yield target
    target.close()


def _explode() -> None:
    raise IndexError("a bug the parser does not type")


def _spin() -> None:
    time.sleep(60)  # stands for pdfium stuck in a loop: the watchdog must end it


class _Backend:
    """A parser backend whose worker runs `work` instead of parse_pdf."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.worker, self.work = MemoryCappedWorker(), work

    async def parse(self, pdf: bytes, filename: str, **_: Any) -> Any:
        return await self.worker.run(self.work)


def test_the_replay_tells_clean_from_crash_and_hang() -> None:
    pdf = make_policy_pdf(seed=1, pages=1)
    # 5 s, not 1: a clean parse on a loaded 2-core CI machine took over 1 s and read as a hang.
    target = Target(step_timeout_s=5)
    try:
        assert target.check(pdf).problem is None
        assert target.check(b"%PDF-1.7\n" + b"\x00" * 64).problem is None  # refused, typed
        target.backend.worker.close()
        target.backend = _Backend(_explode)
        crash = target.check(pdf)
        assert (crash.problem, crash.parser) == ("crash", "exception")
        assert "IndexError" in crash.detail
        target.backend = _Backend(_spin)
        started = time.monotonic()
        assert target.check(pdf).problem == "hang"
        assert time.monotonic() - started < 30  # cut off, not waited out
        assert target.check(pdf).problem is None  # a fresh worker replaced the hung one
    finally:
        target.close()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_a_kept_fuzz_input_ends_cleanly(target: Target, path: Path) -> None:
    outcome = target.check(path.read_bytes())
    assert outcome.problem is None, outcome.detail
