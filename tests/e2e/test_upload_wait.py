"""`accessa upload --wait` (the real CLI, as a user runs it) follows a job across heartbeats and
slow stages to its end: the pipeline's event streams send a heartbeat every second here, and
the mock OpenAI answers slowly, so the embedding stage outlasts several heartbeats."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from accessa.config import Settings
from accessa.ops.localrun import REPO, LocalPipeline
from mocks.policy_pdf import make_policy_pdf

HEARTBEAT_S = 1.0
LATENCY_MS = 4000  # each embeddings request: a stage held for several heartbeats


@pytest.fixture(scope="module")
def slow_pipeline(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPipeline]:
    pipe = LocalPipeline.create(
        infra,
        tmp_path_factory.mktemp("upload-wait"),
        ACCESSA_RETRY_BASE_DELAY_S="1",
        ACCESSA_SSE_HEARTBEAT_S=str(HEARTBEAT_S),
    )
    try:
        pipe.start_all()
        response = httpx.post(f"{pipe.openai_url}/_mock/config", json={"latency_ms": LATENCY_MS})
        response.raise_for_status()
        yield pipe
    finally:
        pipe.stop_all()


def _upload_wait(pipe: LocalPipeline, *paths: Path) -> subprocess.CompletedProcess[str]:
    """`accessa upload --wait` in its own process, as a user would run it."""
    env = {**pipe.env, "ACCESSA_API_URL": pipe.api_url}
    env.pop("ACCESSA_TOKEN", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "accessa.cli.main",
            "upload",
            "--wait",
            "--timeout",
            "600",
            "--user",
            str(uuid.uuid4()),
            *map(str, paths),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _pdf(folder: Path, seed: int) -> Path:
    path = folder / f"policy-{seed}.pdf"
    path.write_bytes(make_policy_pdf(seed=seed + int.from_bytes(os.urandom(3)), pages=2))
    return path


def test_upload_wait_follows_a_job_held_past_many_heartbeats_to_done(
    slow_pipeline: LocalPipeline, tmp_path: Path
) -> None:
    path = _pdf(tmp_path, 1)
    started = time.monotonic()
    result = _upload_wait(slow_pipeline, path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"{path.name}: job [0-9a-f-]{{36}} complete$", result.stdout, re.M), result
    # The precondition, not a speed check: the wait spanned several heartbeats.
    assert time.monotonic() - started > LATENCY_MS / 1000 > 3 * HEARTBEAT_S


def test_concurrent_upload_waits_each_end_with_a_state_or_a_reason(
    slow_pipeline: LocalPipeline, tmp_path: Path
) -> None:
    # Issue 19: 47 documents at once, 18 of the `upload --wait` died on a heartbeat.
    paths = [_pdf(tmp_path, seed) for seed in range(24)]
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        results = list(pool.map(lambda p: _upload_wait(slow_pipeline, p), paths))
    for path, result in zip(paths, results, strict=True):
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        assert result.returncode in (0, 1), output
        if result.returncode == 0:
            assert re.search(rf"{path.name}: job \S+ complete$", result.stdout, re.M), output
        else:  # a readable reason for the file, on stderr
            assert path.name in result.stderr, output
    print(f"{sum(r.returncode == 0 for r in results)}/{len(results)} exited 0")
    assert sum(r.returncode == 0 for r in results) >= len(results) // 2, [
        r.stderr[-300:] for r in results if r.returncode
    ]
