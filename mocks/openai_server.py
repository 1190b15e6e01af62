"""A mock of OpenAI's embeddings API (`POST /v1/embeddings`), spoken over real HTTP.

Vectors are deterministic unit vectors seeded by sha256(model, text): the same text always
embeds the same, different texts differ. `encoding_format` "float" (the API default) and
"base64" (little-endian float32, what the `openai` SDK asks for) are both served.

Fault hooks, by a marker inside an input text:
    <<mock:wrong-dim>>  that vector has one dimension too few
    <<mock:nan>>        that vector's first value is NaN; JSON has no NaN, so in float mode
                        the value is `null` (base64 mode carries a real float32 NaN)
    <<mock:400>>        the whole request answers 400 invalid_request_error

Simulation: `latency_ms` per request; `failure_rate` of requests (a deterministic sequence
from `seed`) answer 429 (with `Retry-After` and `retry-after-ms`), 500 or 503.

Control endpoints (no auth): `GET /_mock/requests`, `GET /_mock/stats`, `POST /_mock/reset`,
`POST /_mock/config` with any of {latency_ms, failure_rate, seed, retry_after_s,
fail_next: [status, ...]} - `fail_next` forces the next requests to answer those statuses.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mocks.simulation import Simulation, add_control_routes

try:
    from accessa.tokens import count_tokens
except ImportError:  # accessa.tokens is optional here: over-estimate tokens without it

    def count_tokens(text: str) -> int:
        return len(text.encode()) // 2 + 1


MODEL_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000


_WORD = re.compile(r"\w+", re.UNICODE)


@functools.lru_cache(maxsize=65536)
def _word_features(model: str, word: str, dims: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """A word's 4 positions and signs. Cached: policy text repeats its words, and hashing each
    one again cost the mock 0.6 ms a chunk, a third of an idle document's embedding call."""
    h = hashlib.blake2b(f"{model}\0{word}".encode(), digest_size=16).digest()
    idxs = tuple(int.from_bytes(h[i * 3 : i * 3 + 3], "little") % dims for i in range(4))
    return idxs, tuple(1.0 if h[12 + i] & 1 else -1.0 for i in range(4))


def mock_vector(text: str, model: str = "text-embedding-3-small", dims: int = 1536) -> np.ndarray:
    """The deterministic unit vector (float64) this mock returns for `text` under `model`.

    Words are feature-hashed (each adds ±1 at 4 positions seeded by the word and model), so
    texts sharing words point the same way and search over mock vectors ranks by word overlap;
    a pseudo-random component seeded by the whole text's hash makes every text distinct.
    """
    digest = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:16], "little"))
    vec = 0.35 * rng.standard_normal(dims)
    words = _WORD.findall(text.lower())
    if words:
        hashed = np.zeros(dims)
        features = [_word_features(model, word, dims) for word in words]
        # Sums of ±1 are exact in any order: the same vector as adding word by word.
        np.add.at(hashed, [i for f in features for i in f[0]], [x for f in features for x in f[1]])
        norm = np.linalg.norm(hashed)
        if norm:
            vec += hashed / norm * np.sqrt(dims)
    return vec / np.linalg.norm(vec)


def openai_error(status: int, message: str, type_: str, code: str | None, param: str | None = None):
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


@dataclass
class MockState(Simulation):
    """Runtime knobs plus what the mock has seen."""

    log: list[dict[str, Any]] = field(default_factory=list)
    embeds_by_hash: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        super().reset()
        self.log.clear()
        self.embeds_by_hash.clear()

    def failure_response(self, status: int) -> Response:
        if status == 429:
            msg = "Rate limit reached for requests (mock)."
            resp = openai_error(429, msg, "requests", "rate_limit_exceeded")
            resp.headers["Retry-After"] = f"{self.retry_after_s:g}"
            resp.headers["retry-after-ms"] = f"{self.retry_after_s * 1000:g}"
            return resp
        return openai_error(status, "The server had an error (mock).", "server_error", None)


def _normalise_inputs(raw: Any) -> list[tuple[str, int]] | None:
    """(text to hash, token count) per input, or None when `raw` is not a valid input."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(t, int) for t in raw):
        raw = [raw]
    out = []
    for item in raw:
        if isinstance(item, str) and item:
            out.append((item, count_tokens(item)))
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            out.append((json.dumps(item), len(item)))
        else:
            return None
    return out


def _encode(vec: np.ndarray, fmt: str) -> list[float | None] | str:
    if fmt == "base64":
        return base64.b64encode(vec.astype("<f4").tobytes()).decode()
    return [None if not np.isfinite(x) else float(x) for x in vec]


def _embed(state: MockState, body: dict[str, Any], request: Request) -> Response:
    model = body.get("model")
    fmt = body.get("encoding_format") or "float"
    inputs = _normalise_inputs(body.get("input"))
    if not isinstance(model, str) or inputs is None or fmt not in ("float", "base64"):
        return openai_error(400, "Invalid request body.", "invalid_request_error", None, "input")
    if model not in MODEL_DIMENSIONS:
        msg = f"The model `{model}` does not exist or you do not have access to it."
        return openai_error(404, msg, "invalid_request_error", "model_not_found")
    dims = body.get("dimensions", MODEL_DIMENSIONS[model])
    if "dimensions" in body and not (
        model.startswith("text-embedding-3")
        and isinstance(dims, int)
        and 0 < dims <= MODEL_DIMENSIONS[model]
    ):
        msg = "This model does not support specifying dimensions."
        return openai_error(400, msg, "invalid_request_error", None, "dimensions")
    if len(inputs) > MAX_INPUTS:
        msg = f"'$.input' is invalid: at most {MAX_INPUTS} inputs per request."
        return openai_error(400, msg, "invalid_request_error", None, "input")
    tokens = sum(n for _, n in inputs)
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t, _ in inputs]
    request.state.detail = {"n_inputs": len(inputs), "tokens": tokens, "input_sha256": hashes}
    if (longest := max(n for _, n in inputs)) > MAX_INPUT_TOKENS:
        msg = (
            f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you "
            f"requested {longest} tokens. Please reduce your prompt."
        )
        return openai_error(400, msg, "invalid_request_error", "context_length_exceeded", "input")
    if tokens > MAX_REQUEST_TOKENS:
        msg = f"Requested {tokens} tokens, max {MAX_REQUEST_TOKENS} tokens per request."
        return openai_error(400, msg, "invalid_request_error", "max_tokens_per_request", "input")
    if any("<<mock:400>>" in t for t, _ in inputs):
        return openai_error(400, "Rejected by <<mock:400>>.", "invalid_request_error", None)

    data = []
    for i, (text, _) in enumerate(inputs):
        vec = mock_vector(text, model, dims - ("<<mock:wrong-dim>>" in text))
        if "<<mock:nan>>" in text:
            vec[0] = np.nan
        data.append({"object": "embedding", "index": i, "embedding": _encode(vec, fmt)})
    state.embeds_by_hash.update(hashes)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})


def create_app(
    latency_ms: float = 0,
    failure_rate: float = 0.0,
    seed: int = 0,
    api_key: str | None = None,
) -> FastAPI:
    """The mock OpenAI app; each app has its own state. `api_key` None accepts any key."""
    app = FastAPI(title="Mock OpenAI")
    state = MockState(latency_ms=latency_ms, failure_rate=failure_rate, seed=seed)
    state.reset()
    app.state.mock = state

    @app.middleware("http")
    async def simulate(request: Request, call_next):
        if request.url.path.startswith("/_mock/"):
            return await call_next(request)
        request.state.detail = {}
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not key or (api_key is not None and key != api_key):
            msg = "You didn't provide an API key (mock)."
            resp = openai_error(401, msg, "invalid_request_error", "invalid_api_key")
        elif (status := state.draw_failure()) is not None:
            resp = state.failure_response(status)
        else:
            resp = await call_next(request)
        entry = {"time": time.time(), "method": request.method, "path": request.url.path}
        state.log.append(entry | {"status": resp.status_code} | request.state.detail)
        return resp

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return openai_error(
                400, "Could not parse the JSON body.", "invalid_request_error", None
            )
        return _embed(state, body, request)

    @app.get("/_mock/requests")
    async def requests_log() -> list[dict[str, Any]]:
        return state.log

    @app.get("/_mock/stats")
    async def stats() -> dict[str, Any]:
        return {
            "requests": len(state.log),
            "inputs_embedded": sum(state.embeds_by_hash.values()),
            "embeds_by_hash": dict(state.embeds_by_hash),
        }

    add_control_routes(app, state)
    return app
