"""Property test: schemathesis generates requests from the OpenAPI spec against a live server
(real uvicorn, Postgres, Kafka). No request may cause a server error, and every response must
match the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accessa.auth import mint_token
from accessa.config import Settings
from accessa.topics import ensure_topics
from mocks import openai_server
from mocks.serve import start_in_thread
from producer_api.main import create_app
from tests.integration.test_api_support import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 80
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# The signed-URL PUT takes raw PDF bytes: send generated bodies as they are.
schemathesis.serializer.alias("application/pdf", "application/octet-stream")


@pytest.fixture(scope="module")
def live_api(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    storage: Path = tmp_path_factory.mktemp("fuzz-storage")
    # The search endpoint embeds its query: give it the mock OpenAI server over real HTTP.
    openai_url, stop_openai = start_in_thread(openai_server.create_app())
    fuzz = infra.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}-",
            "storage_dir": storage,
            "rate_limits_enabled": False,
            "topic_partitions": 1,
            "openai_base_url": f"{openai_url}/v1",
        }
    )
    asyncio.run(ensure_topics(fuzz))
    try:
        with LiveServer(create_app(fuzz)) as server:
            server.token = mint_token(fuzz, uuid.uuid4())  # type: ignore[attr-defined]
            yield server
    finally:
        stop_openai()


def _conformance_test(
    operation: Any, mode: GenerationMode, live_api: LiveServer, sent: dict[str, int]
) -> Callable[[], None]:
    headers = {"Authorization": f"Bearer {live_api.token}"}  # type: ignore[attr-defined]
    key = f"{operation.label} ({mode.value})"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        sent[key] = sent.get(key, 0) + 1
        case.call_and_validate(base_url=live_api.url, headers=headers, checks=CHECKS)

    return conforms


def test_api_conforms_to_its_openapi_schema(live_api: LiveServer) -> None:
    """Every operation, valid and invalid generated cases (schemathesis' pytest plugin does
    not support pytest 9 yet, so hypothesis drives its strategies directly)."""
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    sent: dict[str, int] = {}
    for result, mode in itertools.product(schema.get_all_operations(), MODES):
        try:
            _conformance_test(result.ok(), mode, live_api, sent)()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to negate (e.g. /health)
    print(f"schemathesis: {sum(sent.values())} requests", sent)
    assert len({key.split(" (")[0] for key in sent}) >= 9, sent
    assert sum(sent.values()) >= 1000, sent
