"""A document's whole parse has a time budget: past it the worker process is killed and the
document fails `parse_timeout`, permanent (one delivery, then the DLQ); the parser goes on."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from accessa.config import Settings
from accessa.errors import PermanentError
from accessa.runtime.stage import StageRuntime
from consumers.parser import ocr
from consumers.parser.app import stage
from consumers.parser.backends import LocalBackend, document_timeout_s
from mocks.policy_pdf import make_policy_pdf
from mocks.scanned_pdf import known_pages, scan, text_pdf

try:
    ocr.engine()
    TESSERACT = ""
except ocr.OcrUnavailable as exc:
    TESSERACT = str(exc)


def gone(pid: int) -> bool:
    """No such process, or only its zombie left for the fork server to reap."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(bool(TESSERACT), reason=f"Tesseract: {TESSERACT}")
async def test_a_parse_past_its_budget_kills_the_worker_and_the_next_document_parses() -> None:
    # Eight scanned pages at 300 dpi: seconds of real OCR, against a half-second budget.
    slow = scan(text_pdf(known_pages(8, seed=3)), dpi=300)
    backend = LocalBackend(document_timeout_s=0.5)
    try:
        pid = await backend.worker.run(os.getpid)  # the worker the parse will run in
        assert pid != os.getpid() and not gone(pid)
        started = time.monotonic()
        with pytest.raises(PermanentError) as raised:
            await backend.parse(slow, "scan.pdf", document_id=uuid.uuid4())
        assert raised.value.code == "parse_timeout"
        assert time.monotonic() - started < 30  # it did not wait for the OCR to finish
        assert wait_until(lambda: gone(pid)), f"worker {pid} still running"
        assert backend.worker.pids == []

        backend.document_timeout_s = 120.0  # a new worker's start counts against the budget
        parsed = await backend.parse(
            make_policy_pdf(seed=1, pages=2), "policy.pdf", document_id=uuid.uuid4()
        )
        assert parsed.pages >= 1 and "<!-- page 1 -->" in parsed.markdown
        assert backend.worker.pids and backend.worker.pids[0] != pid
    finally:
        backend.worker.close()


def test_the_default_budget_comes_from_the_page_cap_and_fits_the_poll_interval() -> None:
    settings = Settings(parser_document_timeout_s=None)
    assert document_timeout_s(settings) == 60 + 1.5 * 2000
    assert document_timeout_s(Settings(parser_document_timeout_s=90)) == 90
    runtime_poll_ms = StageRuntime.max_poll_interval_ms(_Runtime(settings))  # type: ignore[arg-type]
    # Sixteen documents a poll, each within its budget, one after another, and a minute more.
    assert runtime_poll_ms >= (16 * document_timeout_s(settings) + 60) * 1000


class _Runtime:
    """What `max_poll_interval_ms` reads of a StageRuntime, without a broker."""

    def __init__(self, settings: Settings) -> None:
        self.app, self.settings = stage, settings
