"""A stage as its author writes it: a name, an input event model, a handler, a setup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from accessa.config import Settings
from accessa.runtime.context import StageContext, StageResources
from accessa.runtime.work import Work
from schemas.events import Event
from schemas.topics import STAGES, Stage

R = TypeVar("R")  # the stage's own resources (`StageApp.setup`), None without a setup

# decode → work → return the unit of work (output and writes); the runtime commits and emits.
Handler = Callable[[Any, StageContext[R]], Awaitable[Work]]
Setup = Callable[[StageResources], Awaitable[R]]


@dataclass
class StageApp(Generic[R]):
    """A stage: its name, input event model and handler, and the setup that makes its own
    resources once per process (the handler reads them as `ctx.own`).
    `consumers/<stage>/app.py` makes one."""

    name: str
    input_model: type[Event]
    stage: Stage | None = None  # defaults to STAGES[name]
    handler: Handler[R] | None = None
    max_records: int | None = None
    # A pure transform (no database writes): no dedup row, since its output is a function of
    # the input with a deterministic id the next stage dedups.
    stateless: bool = False
    # The longest one record's handling may take (a stage that bounds its own work, e.g. the
    # parser's document timeout): the consumer's max.poll.interval is sized to a batch of them.
    record_time_limit_s: Callable[[Settings], float] | None = None
    # The status a job shows while this stage works on it (e.g. `parse_queued`): set for the
    # whole wave in one statement, beside its handlers and before its commit.
    working_status: str | None = None
    # The handler reads its job (`ctx.job()`): the runtime reads a wave's jobs in one
    # statement (the batch's first wave beside the delivery count), not one query a record.
    reads_job: bool = False
    setup: Setup[R] | None = None

    def __post_init__(self) -> None:
        self.stage = self.stage or STAGES[self.name]

    def handle(self, fn: Handler[R]) -> Handler[R]:
        self.handler = fn
        return fn

    def on_setup(self, fn: Setup[R]) -> Setup[R]:
        self.setup = fn
        return fn
