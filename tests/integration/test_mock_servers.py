"""The mock servers over real HTTP: the wire shapes, the fault hooks, the control endpoints."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from accessa.config import Settings
from mocks import llamaparse_server, openai_server
from mocks.openai_server import mock_vector
from mocks.serve import running_server, serve_mocks, start_in_thread
from tests.utils import CORPUS, free_port, wait_for

AUTH = {"Authorization": "Bearer sk-test"}


@pytest.fixture
async def openai_http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_server(openai_server.create_app()) as url,
        httpx.AsyncClient(base_url=url, headers=AUTH) as client,
    ):
        yield client


@pytest.fixture
async def llamaparse_http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_server(llamaparse_server.create_app(delay_s=0.2)) as url,
        httpx.AsyncClient(base_url=url, headers=AUTH) as client,
    ):
        yield client


async def embed(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/v1/embeddings", json={"model": "text-embedding-3-small", **body})


async def test_embeddings_float_response_shape(openai_http: httpx.AsyncClient) -> None:
    resp = await embed(openai_http, input=["a clause", "another clause"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list" and body["model"] == "text-embedding-3-small"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert {d["object"] for d in body["data"]} == {"embedding"}
    assert np.allclose(body["data"][0]["embedding"], mock_vector("a clause"))
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


async def test_embeddings_base64_is_little_endian_float32(openai_http: httpx.AsyncClient) -> None:
    resp = await embed(openai_http, input="a clause", encoding_format="base64", dimensions=256)
    raw = base64.b64decode(resp.json()["data"][0]["embedding"])
    vec = np.frombuffer(raw, dtype="<f4")
    assert vec.shape == (256,)
    assert np.allclose(vec, mock_vector("a clause", dims=256), atol=1e-6)


async def test_token_array_inputs(openai_http: httpx.AsyncClient) -> None:
    one = await embed(openai_http, input=[1, 2, 3])
    two = await embed(openai_http, input=[[1, 2, 3], [4, 5]])
    assert len(one.json()["data"]) == 1 and len(two.json()["data"]) == 2
    assert two.json()["usage"]["total_tokens"] == 5


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"input": ["x"] * 2049}, 400, None),
        ({"input": "word " * 9000}, 400, "context_length_exceeded"),
        ({"input": ["fine", "<<mock:400>>"]}, 400, None),
        ({"input": ""}, 400, None),
        ({"input": "x", "model": "no-such-model"}, 404, "model_not_found"),
        ({"input": "x", "model": "text-embedding-ada-002", "dimensions": 256}, 400, None),
    ],
)
async def test_embeddings_rejections(
    openai_http: httpx.AsyncClient, body: dict, status: int, code: str | None
) -> None:
    resp = await embed(openai_http, **body)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


async def test_embeddings_need_a_bearer_key(openai_http: httpx.AsyncClient) -> None:
    resp = await openai_http.post("/v1/embeddings", json={}, headers={"Authorization": ""})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


async def test_fault_markers(openai_http: httpx.AsyncClient) -> None:
    resp = await embed(openai_http, input=["ok", "<<mock:wrong-dim>>", "<<mock:nan>>"])
    ok, wrong, nan = (d["embedding"] for d in resp.json()["data"])
    assert (len(ok), len(wrong)) == (1536, 1535)
    assert nan[0] is None  # float mode: JSON has no NaN
    resp = await embed(openai_http, input="<<mock:nan>>", encoding_format="base64")
    assert np.isnan(np.frombuffer(base64.b64decode(resp.json()["data"][0]["embedding"]), "<f4")[0])


async def test_failure_rate_is_a_deterministic_sequence() -> None:
    async def statuses() -> list[int]:
        app = openai_server.create_app(failure_rate=0.5, seed=7)
        async with (
            running_server(app) as url,
            httpx.AsyncClient(base_url=url, headers=AUTH) as client,
        ):
            return [(await embed(client, input="x")).status_code for _ in range(20)]

    first = await statuses()
    assert first == await statuses()
    assert 200 in first and set(first) - {200} <= {429, 500, 503} and set(first) != {200}


async def test_forced_429_carries_retry_after(openai_http: httpx.AsyncClient) -> None:
    await openai_http.post("/_mock/config", json={"fail_next": [429], "retry_after_s": 0.3})
    resp = await embed(openai_http, input="x")
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "0.3" and resp.headers["retry-after-ms"] == "300"
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert (await embed(openai_http, input="x")).status_code == 200


async def test_requests_log_and_stats(openai_http: httpx.AsyncClient) -> None:
    await embed(openai_http, input=["a", "b"])
    await embed(openai_http, input=["a"])
    log = (await openai_http.get("/_mock/requests")).json()
    sha_a = hashlib.sha256(b"a").hexdigest()
    assert [e["n_inputs"] for e in log] == [2, 1]
    assert log[1]["input_sha256"] == [sha_a] and log[1]["status"] == 200
    stats = (await openai_http.get("/_mock/stats")).json()
    assert stats["requests"] == 2 and stats["inputs_embedded"] == 3
    assert stats["embeds_by_hash"][sha_a] == 2
    await openai_http.post("/_mock/reset")
    assert (await openai_http.get("/_mock/stats")).json()["requests"] == 0


async def test_latency_is_configurable(openai_http: httpx.AsyncClient) -> None:
    await openai_http.post("/_mock/config", json={"latency_ms": 150})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await embed(openai_http, input="x")
    assert loop.time() - started >= 0.15


async def test_llamaparse_job_lifecycle(llamaparse_http: httpx.AsyncClient) -> None:
    pdf = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()
    resp = await llamaparse_http.post(
        "/api/v1/parsing/upload", files={"file": ("a.pdf", pdf, "application/pdf")}
    )
    assert resp.json()["status"] == "PENDING"
    job = f"/api/v1/parsing/job/{resp.json()['id']}"
    assert (await llamaparse_http.get(job)).json()["status"] == "PENDING"
    assert (await llamaparse_http.get(f"{job}/result/markdown")).status_code == 400

    async def finished() -> bool:
        return (await llamaparse_http.get(job)).json()["status"] == "SUCCESS"

    await wait_for(finished, timeout=5, interval=0.05)
    result = (await llamaparse_http.get(f"{job}/result/markdown")).json()
    assert result["job_metadata"]["job_pages"] == 4
    assert [f"<!-- page {n} -->" in result["markdown"] for n in (1, 2, 3, 4)] == [True] * 4
    assert result["markdown"].count(llamaparse_server.PAGE_SEPARATOR) == 3


async def test_llamaparse_corrupt_pdf_job_errors(llamaparse_http: httpx.AsyncClient) -> None:
    await llamaparse_http.post("/_mock/config", json={"delay_s": 0})
    files = {"file": ("bad.pdf", b"%PDF-1.7 garbage", "application/pdf")}
    job_id = (await llamaparse_http.post("/api/v1/parsing/upload", files=files)).json()["id"]
    status = (await llamaparse_http.get(f"/api/v1/parsing/job/{job_id}")).json()
    assert status["status"] == "ERROR" and "corrupt" in status["error_message"]


async def test_llamaparse_auth_and_forced_failure(llamaparse_http: httpx.AsyncClient) -> None:
    unknown = "/api/v1/parsing/job/nope"
    assert (await llamaparse_http.get(unknown, headers={"Authorization": ""})).status_code == 401
    await llamaparse_http.post("/_mock/config", json={"fail_next": [503]})
    assert (await llamaparse_http.get(unknown)).status_code == 503
    assert (await llamaparse_http.get(unknown)).status_code == 404
    log = (await llamaparse_http.get("/_mock/requests")).json()
    assert [e["status"] for e in log] == [401, 503, 404]


async def test_serve_mocks_runs_both_until_cancelled() -> None:
    settings = Settings(mock_openai_port=free_port(), mock_llamaparse_port=free_port())
    task = asyncio.create_task(serve_mocks(settings))
    openai_url = f"http://127.0.0.1:{settings.mock_openai_port}/_mock/stats"
    llamaparse_url = f"http://127.0.0.1:{settings.mock_llamaparse_port}/_mock/requests"

    async def both_up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                answers = [await client.get(u) for u in (openai_url, llamaparse_url)]
        except httpx.TransportError:
            return False
        return all(a.status_code == 200 for a in answers)

    await wait_for(both_up, timeout=10, interval=0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await both_up()


def test_start_in_thread_serves_sync_clients() -> None:
    url, stop = start_in_thread(openai_server.create_app())
    try:
        resp = httpx.post(
            f"{url}/v1/embeddings",
            headers=AUTH,
            json={"model": "text-embedding-3-small", "input": "x"},
        )
        assert resp.status_code == 200
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_mock/stats")
