"""The local runner that tests and benchmarks start the pipeline with."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from accessa.config import Settings
from accessa.localrun import LocalPipeline


def _accessa_children() -> set[int]:
    return {
        child.pid
        for child in psutil.Process().children(recursive=True)
        if "accessa.cli.main" in " ".join(child.cmdline())
    }


def test_a_process_that_cannot_start_takes_the_ones_started_before_it_down(
    infra: Settings, tmp_path: Path
) -> None:
    no_db = f"{infra.dsn.rsplit('/', 1)[0]}/no_such_database"
    pipe = LocalPipeline.create(infra, tmp_path, ACCESSA_DATABASE_URL=no_db)
    before = _accessa_children()

    with pytest.raises(RuntimeError, match="api exited") as failure:
        pipe.start_all(("mocks", "api"))

    assert "no_such_database" in str(failure.value)  # the log tail says why
    assert pipe.procs == {}
    assert _accessa_children() == before  # the mock servers were stopped, not orphaned
