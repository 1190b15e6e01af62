"""The local parser runs pdfium in a memory-capped worker: each issue-13 bomb fails as
`pdf_bomb`, so does any allocation over the cap, and the worker is replaced afterwards."""

from __future__ import annotations

import uuid

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
def backend() -> LocalBackend:
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
