"""The whole pipeline as real processes (`accessa run ...`) on the test broker and database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accessa.config import Settings
from accessa.ops.localrun import COMPACTOR, CONSOLE, LocalPipeline


def _running(infra: Settings, home: Path) -> Iterator[LocalPipeline]:
    pipe = LocalPipeline.create(infra, home, ACCESSA_RETRY_BASE_DELAY_S="1")
    try:
        pipe.start_all()
        yield pipe
    finally:
        pipe.stop_all()


@pytest.fixture(scope="session")
def pipeline(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    """Every process of the pipeline, ready; stopped with SIGTERM at the end of the session."""
    yield from _running(infra, tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def console(pipeline: LocalPipeline) -> str:
    """The operator's console (`accessa run console`, as ops) beside the pipeline: its URL."""
    if CONSOLE not in pipeline.procs:
        pipeline.start(CONSOLE)
        pipeline.wait_ready((CONSOLE,))
    return pipeline.console_url


@pytest.fixture
def compactor(pipeline: LocalPipeline) -> Iterator[str]:
    """The chunk segments' compactor (`accessa run compactor`) beside the pipeline, for one
    test (it rolls segments of the whole database): its /metrics URL."""
    # Due by neither rows nor age here: it reports, and builds no index under the other tests.
    pipeline.start(
        COMPACTOR, ACCESSA_SEGMENT_SEAL_ROWS="1000000000", ACCESSA_SEGMENT_SEAL_AGE_S="1e9"
    )
    try:
        pipeline.wait_ready((COMPACTOR,))
        yield pipeline.health[COMPACTOR].rsplit("/", 1)[0] + "/metrics"
    finally:
        pipeline.stop(COMPACTOR)


@pytest.fixture(scope="module")
def secure_pipeline(
    secure_cluster: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPipeline]:
    """The same on the secured 3-node cluster, each process as its own principal."""
    yield from _running(secure_cluster, tmp_path_factory.mktemp("secure-pipeline"))
