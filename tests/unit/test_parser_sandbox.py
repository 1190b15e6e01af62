"""The local parser runs pdfium in a memory-capped worker: each issue-13 bomb fails as
`pdf_bomb`, so does any allocation over the cap, and the worker is replaced afterwards."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psutil
import pytest

from accessa.errors import PermanentError
from consumers.parser.backends import LocalBackend
from consumers.parser.sandbox import MemoryCappedWorker
from mocks.policy_pdf import make_policy_pdf
from tests import bomb_pdfs

MB = 1_048_576


def allocate(mb: int) -> int:
    return len(bytearray(mb * MB))


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    backend = LocalBackend(max_expanded_bytes=16 * MB)
    yield backend
    backend.worker.close()


@pytest.mark.parametrize("variant", sorted(bomb_pdfs.BYPASSES))
async def test_the_parser_refuses_each_issue_13_bypass_as_a_bomb(
    backend: LocalBackend, variant: str
) -> None:
    with pytest.raises(PermanentError) as raised:
        await backend.parse(bomb_pdfs.BYPASSES[variant](64), "bomb.pdf", document_id=uuid.uuid4())
    assert raised.value.code == "pdf_bomb"


async def test_an_allocation_over_the_cap_is_a_clean_error_and_the_worker_comes_back() -> None:
    worker = MemoryCappedWorker(128)
    try:
        assert await worker.run(allocate, 32) == 32 * MB
        with pytest.raises(PermanentError) as raised:
            await worker.run(allocate, 256)
        assert raised.value.code == "pdf_bomb"
        assert await worker.run(allocate, 32) == 32 * MB
    finally:
        worker.close()


async def test_pdfium_past_the_cap_fails_as_a_bomb_even_when_the_guard_lets_it_through() -> None:
    unguarded = LocalBackend(max_expanded_bytes=1 << 40, memory_limit_mb=128)
    try:
        with pytest.raises(PermanentError) as raised:
            await unguarded.parse(bomb_pdfs.plain(300), "bomb.pdf", document_id=uuid.uuid4())
        assert raised.value.code == "pdf_bomb"
        parsed = await unguarded.parse(
            make_policy_pdf(seed=3, pages=2), "ok.pdf", document_id=uuid.uuid4()
        )
        assert parsed.pages == 2
    finally:
        unguarded.worker.close()


async def test_other_permanent_errors_keep_their_code(backend: LocalBackend) -> None:
    with pytest.raises(PermanentError) as raised:
        await backend.parse(b"%PDF-1.7\n garbage", "bad.pdf", document_id=uuid.uuid4())
    assert raised.value.code == "pdf_corrupt"


_PARSE_THEN_WAIT = """
import asyncio, sys, uuid
from consumers.parser.backends import LocalBackend
from mocks.policy_pdf import make_policy_pdf

backend = LocalBackend()  # held, as the stage holds it: its worker stays up
pdf = make_policy_pdf(seed=5, pages=1)
parsed = asyncio.run(backend.parse(pdf, "ok.pdf", document_id=uuid.uuid4()))
print(parsed.pages, flush=True)
sys.stdin.read()  # parked until the test kills it
"""


def test_a_killed_parser_takes_its_forkserver_worker_and_resource_tracker_with_it() -> None:
    """SIGKILL runs no cleanup: the helpers must still go (they used to keep each other alive)."""
    parser = subprocess.Popen(
        [sys.executable, "-c", _PARSE_THEN_WAIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parser.stdout is not None
        assert parser.stdout.readline().strip() == "1"
        helpers = psutil.Process(parser.pid).children(recursive=True)
        commands = " ".join(" ".join(helper.cmdline()) for helper in helpers)
        assert "forkserver" in commands and "resource_tracker" in commands
        assert len(helpers) >= 3  # resource tracker, fork server, and the fork server's worker
        parser.kill()
        parser.wait(timeout=30)
        _, alive = psutil.wait_procs(helpers, timeout=30)
        assert alive == [], f"left running: {[' '.join(p.cmdline()) for p in alive]}"
    finally:
        parser.kill()
        parser.wait(timeout=30)
