"""The whole pipeline as real processes (`accessa run ...`) on the test broker and database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accessa.config import Settings
from accessa.localrun import LocalPipeline


@pytest.fixture(scope="session")
def pipeline(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    """Every process of the pipeline, ready; stopped with SIGTERM at the end of the session."""
    pipe = LocalPipeline.create(
        infra, tmp_path_factory.mktemp("pipeline"), ACCESSA_RETRY_BASE_DELAY_S="1"
    )
    try:
        pipe.start_all()
        yield pipe
    finally:
        pipe.stop_all()
