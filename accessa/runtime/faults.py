"""Test-only fault injection: `ACCESSA_FAULT_INJECT=<stage>:<point>[:<n>]` SIGKILLs the process
the n-th time (default 1st) it reaches `point`. Inert when the setting is unset (production).

Points: `before_db_commit`, `after_db_commit`, `after_produce` (reached in a batch's settle,
counted only while no handler of the next batch runs), and stage-specific ones such as
`mid_embed`. A marker file under ACCESSA_HOME makes each fault fire once across restarts.

`<stage>:kill_on_document:<document_id>` is a poison pill instead: the process is SIGKILLed
every time a handler starts on that document, restart after restart.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from accessa.config import Settings


class FaultInjector:
    def __init__(self, settings: Settings, stage: str) -> None:
        self.target: tuple[str, int] | None = None
        self.kill_document: str | None = None
        self.hits = 0
        spec = settings.fault_inject
        if spec:
            parts = spec.split(":")
            if parts[0] == stage and parts[1] == "kill_on_document":
                self.kill_document = parts[2]
            elif parts[0] == stage:
                self.target = (parts[1], int(parts[2]) if len(parts) > 2 else 1)
        self.marker = settings.home / "faults" / f"{spec}".replace(":", "_").replace("/", "_")

    def point(self, name: str, *, quiet: bool = True) -> None:
        """Die here if this is the configured point (and it has not fired before). A reach
        that is not `quiet` (other work in flight that a kill would cut short too, e.g. the
        next batch's paid embedding request while this one settles) is not counted."""
        if self.target is None or self.target[0] != name or not quiet:
            return
        self.hits += 1
        if self.hits < self.target[1] or self.marker.exists():
            return
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        Path(self.marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)

    def handling(self, document_id: object) -> None:
        """Die here, every time, if a handler is starting on the poison-pill document."""
        if self.kill_document is not None and str(document_id) == self.kill_document:
            os.kill(os.getpid(), signal.SIGKILL)
