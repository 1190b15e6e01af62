"""Issue 22: a fax-quality scan completes, and is not counted as good: its job's quality flag
shows in GET /api/v2/jobs/{id}, in `accessa jobs --quality`, and in the parser's metric."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import httpx
import pytest

from accessa.ops.localrun import LocalPipeline
from mocks.scanned_pdf import known_pages, scan, text_pdf
from tests.e2e.test_pipeline_ops import cli, upload_and_finish
from tests.unit.test_ocr import needs_tesseract
from tests.utils import CORPUS

pytestmark = [pytest.mark.e2e, pytest.mark.slow, needs_tesseract]


def flagged(pipeline: LocalPipeline, flag: str) -> float:
    """The parser's `accessa_documents_quality_flag_total{flag=...}` now (0 before the first)."""
    url = pipeline.health["parser"].rsplit("/", 1)[0] + "/metrics"
    text = httpx.get(url, timeout=10).text
    found = re.search(
        rf'^accessa_documents_quality_flag_total{{flag="{flag}"}} (\S+)$', text, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def test_a_fax_quality_scan_completes_flagged_low_ocr_confidence(pipeline: LocalPipeline) -> None:
    user = uuid.uuid4()
    # 50 dpi with heavy sensor noise: Tesseract reads it at ~0.74 mean confidence even after
    # the upscaled retry (tests/unit/test_quality.py), under the 0.85 default.
    fax = scan(text_pdf(known_pages(1, seed=3)), dpi=50, noise=20.0)
    before = flagged(pipeline, "low_ocr_confidence")

    job = asyncio.run(upload_and_finish(pipeline, user, "fax.pdf", fax))
    plain = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()
    text = asyncio.run(upload_and_finish(pipeline, user, "text.pdf", plain))

    assert job["status"] == "complete", job
    quality = job["quality"]
    assert quality["flags"] == ["low_ocr_confidence"], quality
    assert "low confidence" in quality["reasons"][0]
    (page,) = quality["pages"]
    assert page["page"] == 1 and page["text_words"] == 0 and page["image_coverage"] > 0.99
    assert page["ocr_words"] >= 20 and page["ocr_confidence"] < 0.85
    assert text["status"] == "complete" and text["quality"]["flags"] == []

    listed = cli(pipeline, "jobs", "--quality", "low_ocr_confidence", "--json", "--user", str(user))
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [i["job_id"] for i in items] == [job["job_id"]]
    assert items[0]["quality"]["flags"] == ["low_ocr_confidence"]
    everything = json.loads(cli(pipeline, "jobs", "--json", "--user", str(user)).stdout)
    assert {i["job_id"] for i in everything} == {job["job_id"], text["job_id"]}

    assert flagged(pipeline, "low_ocr_confidence") == before + 1  # once for the document
