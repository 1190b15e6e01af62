"""The OpenAI provider (official SDK) against the mock OpenAI over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import numpy as np
import openai
import pytest

from accessa.config import Settings
from accessa.errors import PermanentError, TransientError
from accessa.providers.embeddings import OpenAIProvider, make_provider, plan_batches
from mocks import openai_server
from mocks.openai_server import mock_vector
from mocks.serve import running_server
from tests.utils import MockControl, free_port

TEXTS = [f"clause {i}: the insurer pays for water damage" for i in range(5)]


@pytest.fixture
async def mock() -> AsyncIterator[MockControl]:
    app = openai_server.create_app(api_key="sk-test")
    async with running_server(app) as url, httpx.AsyncClient(base_url=url) as control:
        yield MockControl(url, control)


@pytest.fixture
async def make(mock: MockControl) -> AsyncIterator[Callable[..., OpenAIProvider]]:
    providers: list[OpenAIProvider] = []

    def factory(**overrides: object) -> OpenAIProvider:
        kwargs: dict = {"base_url": f"{mock.url}/v1", "api_key": "sk-test"} | overrides
        providers.append(OpenAIProvider(**kwargs))
        return providers[-1]

    yield factory
    for p in providers:
        await p.aclose()


async def test_embeds_in_input_order_via_base64(make, mock: MockControl) -> None:
    result = await make().embed(TEXTS)
    assert result.requests == 1 and result.tokens > 0
    for text, vec in zip(TEXTS, result.vectors, strict=True):
        assert np.allclose(vec, mock_vector(text), atol=1e-6)  # float32 on the wire
    assert (await mock.log())[0]["n_inputs"] == 5


async def test_batches_by_inputs_and_tokens(make, mock: MockControl) -> None:
    result = await make(batch_inputs=2).embed(TEXTS)
    assert result.requests == 3
    assert np.allclose(result.vectors[4], mock_vector(TEXTS[4]), atol=1e-6)
    assert sorted(e["n_inputs"] for e in await mock.log()) == [1, 2, 2]
    await mock.control.post("/_mock/reset")
    assert (await make(batch_tokens=1).embed(TEXTS)).requests == 5


def test_plan_batches_respects_both_limits() -> None:
    assert plan_batches([5, 5, 5, 5], max_inputs=3, max_tokens=100) == [range(0, 3), range(3, 4)]
    assert plan_batches([5, 5, 5, 5], max_inputs=10, max_tokens=10) == [range(0, 2), range(2, 4)]
    assert plan_batches([50, 1], max_inputs=10, max_tokens=10) == [range(0, 1), range(1, 2)]
    assert plan_batches([], max_inputs=10, max_tokens=10) == []


async def test_dimensions_only_for_models_that_take_them(make) -> None:
    small = await make(dimensions=256).embed(["x"])
    assert len(small.vectors[0]) == 256
    ada = await make(model="text-embedding-ada-002", dimensions=1536).embed(["x"])
    assert len(ada.vectors[0]) == 1536  # the mock rejects `dimensions` for ada-002


async def test_429_retry_after_is_honoured_then_succeeds(make, mock: MockControl) -> None:
    await mock.configure(fail_next=[429], retry_after_s=0.3)
    result = await make().embed(TEXTS[:2])
    assert len(result.vectors) == 2
    first, second = await mock.log()
    assert (first["status"], second["status"]) == (429, 200)
    assert second["time"] - first["time"] >= 0.29


async def test_persistent_429_is_transient_with_defer(make, mock: MockControl) -> None:
    await mock.configure(fail_next=[429] * 3, retry_after_s=0.05)
    with pytest.raises(TransientError) as caught:
        await make().embed(TEXTS)
    assert caught.value.code == "provider_rate_limited"
    assert caught.value.defer_s == pytest.approx(0.05)
    assert isinstance(caught.value.__cause__, openai.RateLimitError)


async def test_server_errors_are_transient(make, mock: MockControl) -> None:
    await mock.configure(fail_next=[503])
    with pytest.raises(TransientError) as caught:
        await make(max_retries=0).embed(TEXTS)
    assert caught.value.code == "provider_unavailable"


async def test_unreachable_provider_is_transient(make) -> None:
    provider = make(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(TransientError) as caught:
        await provider.embed(TEXTS)
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)


@pytest.mark.parametrize(
    ("overrides", "text", "code"),
    [
        ({"api_key": "sk-wrong"}, "x", "provider_auth"),
        ({}, "bad <<mock:400>>", "provider_rejected_input"),
        ({}, "odd <<mock:wrong-dim>>", "vector_wrong_dimension"),
        ({}, "odd <<mock:nan>>", "vector_not_finite"),
        ({"model": "text-embedding-9"}, "x", "provider_error"),
    ],
)
async def test_permanent_failures(make, overrides: dict, text: str, code: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await make(**overrides).embed([*TEXTS, text])
    assert caught.value.code == code


async def test_concurrency_is_bounded(make, mock: MockControl) -> None:
    await mock.configure(latency_ms=100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await make(batch_inputs=1, max_inflight=2).embed(TEXTS[:4])
    assert result.requests == 4
    assert loop.time() - started >= 0.2  # 4 requests, 2 at a time, 100 ms each


async def test_a_kept_result_is_saved_before_its_slot_goes_to_the_next_request(
    make, mock: MockControl
) -> None:
    """What bounds a crash's loss: with one slot, no request is paid for while another's
    vectors are still unsaved."""
    provider = make(max_inflight=1)
    requests_seen_at_keep: list[int] = []

    async def keep(result) -> None:
        await asyncio.sleep(0.05)  # a slow save: a second request must not start meanwhile
        requests_seen_at_keep.append(len(await mock.log()))

    await asyncio.gather(*(provider.embed([t], then=keep) for t in TEXTS[:3]))
    assert requests_seen_at_keep == [1, 2, 3]


async def test_make_provider_from_settings() -> None:
    settings = Settings(embed_model="text-embedding-3-large", embed_dimensions=1024)
    provider = make_provider(settings)
    assert (provider.model, provider.dimensions) == ("text-embedding-3-large", 1024)
    await provider.aclose()
