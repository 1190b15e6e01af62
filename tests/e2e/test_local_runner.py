"""The local runner that tests and benchmarks start the pipeline with."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import pytest

from accessa.config import Settings
from accessa.ops.localrun import LocalPipeline


def _accessa_children() -> set[int]:
    return {
        child.pid
        for child in psutil.Process().children(recursive=True)
        if "accessa.cli.main" in " ".join(child.cmdline())
    }


def test_a_process_that_cannot_start_takes_the_ones_started_before_it_down(
    infra: Settings, tmp_path: Path
) -> None:
    # The API cannot listen on a port already taken. (A refusing Postgres no longer stops a
    # process: it stays up, not ready, and retries.)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        pipe = LocalPipeline.create(infra, tmp_path, ACCESSA_API_PORT=port)
        before = _accessa_children()

        with pytest.raises(RuntimeError, match="api exited") as failure:
            pipe.start_all(("mocks", "api"))

    assert "address already in use" in str(failure.value)  # the log tail says why
    assert pipe.procs == {}
    assert _accessa_children() == before  # the mock servers were stopped, not orphaned
