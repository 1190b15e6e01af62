"""A second stack (own ACCESSA_HOME, topics and ACCESSA_HEALTH_BASE_PORT) runs its stages
beside the first's: each stage binds its own base + offset, both ready at once."""

from __future__ import annotations

from pathlib import Path

import httpx

from accessa.config import STAGE_PORT_OFFSETS, Settings
from accessa.ops.localrun import LocalPipeline, free_port


def _base() -> int:
    """A base whose chunker port (base + 2) was free a moment ago."""
    return free_port() - STAGE_PORT_OFFSETS["chunker"]


def test_two_stacks_run_their_chunkers_side_by_side_on_their_base_ports(
    infra: Settings, tmp_path: Path
) -> None:
    homes = [tmp_path / "first", tmp_path / "second"]
    for home in homes:
        home.mkdir()
    first, second = (LocalPipeline.create(infra, home) for home in homes)
    first.health_base_port, second.health_base_port = _base(), _base()
    try:
        first.start("chunker")
        second.start("chunker")
        first.wait_ready(("chunker",))
        second.wait_ready(("chunker",))
        for pipe in (first, second):
            assert pipe.health_base_port is not None
            port = pipe.health_base_port + STAGE_PORT_OFFSETS["chunker"]
            assert pipe.health["chunker"] == f"http://127.0.0.1:{port}/ready"
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        assert first.procs["chunker"].poll() is None and second.procs["chunker"].poll() is None
    finally:
        first.stop_all()
        second.stop_all()
