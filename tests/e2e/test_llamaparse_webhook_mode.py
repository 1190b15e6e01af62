"""LlamaParse webhook mode as a user runs it: `ACCESSA_PARSER_BACKEND=llamaparse
ACCESSA_LLAMAPARSE_MODE=webhook` and every process of `accessa run all`, the mock LlamaParse
calling the API's own URL back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from accessa.config import Settings
from accessa.ops.localrun import LocalPipeline
from tests.e2e.test_pipeline_ops import upload_and_finish
from tests.utils import CORPUS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def webhook_pipeline(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalPipeline]:
    pipe = LocalPipeline.create(
        infra,
        tmp_path_factory.mktemp("webhook-pipeline"),
        ACCESSA_PARSER_BACKEND="llamaparse",
        ACCESSA_LLAMAPARSE_MODE="webhook",
    )
    try:
        pipe.start_all()
        yield pipe
    finally:
        pipe.stop_all()


def test_webhook_mode_completes_an_upload_through_the_api_callback(
    webhook_pipeline: LocalPipeline,
) -> None:
    llamaparse = webhook_pipeline.env["ACCESSA_LLAMAPARSE_BASE_URL"]
    pdf = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()

    async def run() -> tuple[dict, list[dict]]:
        async with httpx.AsyncClient(base_url=llamaparse) as control:
            # A job that ends at once may call back before the parser has recorded it (404;
            # the parser's own first check then finds it): give the webhook time to be needed.
            (await control.post("/_mock/config", json={"delay_s": 1.0})).raise_for_status()
            job = await upload_and_finish(webhook_pipeline, uuid.uuid4(), "four.pdf", pdf)
            return job, (await control.get("/_mock/webhooks")).json()

    job, deliveries = asyncio.run(run())
    assert (job["status"], job["pages"]) == ("complete", 4), job
    callback = webhook_pipeline.api_url + "/api/v2/webhooks/llamaparse"
    assert [(d["url"], d["answer"]) for d in deliveries] == [(callback, 200)]
