"""Embedding providers: the `EmbeddingProvider` protocol and the OpenAI implementation.

`OpenAIProvider` splits texts into requests of at most `batch_inputs` inputs and
`batch_tokens` tokens, runs at most `max_inflight` of them at once, lets the SDK retry a
couple of times (it honours `Retry-After`), then maps what is left onto `accessa.errors`.
Every returned vector is checked: right length, finite values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import openai

from accessa.config import Settings
from accessa.errors import PermanentError, PipelineError, TransientError

try:
    from accessa.tokens import count_tokens
except ImportError:  # accessa.tokens is optional here: over-estimate tokens without it

    def count_tokens(text: str) -> int:
        return len(text.encode()) // 2 + 1


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors in input order, tokens billed, HTTP requests made."""

    vectors: list[list[float]]
    tokens: int
    requests: int


# Called with a request's result before its in-flight slot is freed (see `embed`).
Keep = Callable[[EmbeddingResult], Awaitable[None]]


class EmbeddingProvider(Protocol):
    model: str
    dimensions: int

    async def embed(self, texts: list[str], then: Keep | None = None) -> EmbeddingResult: ...

    async def aclose(self) -> None: ...


def plan_batches(token_counts: Sequence[int], max_inputs: int, max_tokens: int) -> list[range]:
    """Consecutive index ranges, each within both limits (a lone oversized input stays alone)."""
    batches: list[range] = []
    start = tokens = 0
    for i, n in enumerate(token_counts):
        if i > start and (i - start >= max_inputs or tokens + n > max_tokens):
            batches.append(range(start, i))
            start, tokens = i, 0
        tokens += n
    if start < len(token_counts):
        batches.append(range(start, len(token_counts)))
    return batches


class OpenAIProvider:
    """OpenAI embeddings through the official SDK (or anything speaking its API)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str = "text-embedding-3-small",
        dimensions: int = 1536,
        batch_inputs: int = 256,
        batch_tokens: int = 300_000,
        max_inflight: int = 8,
        max_retries: int = 2,
        timeout_s: float = 60.0,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        self.batch_inputs = batch_inputs
        self.batch_tokens = batch_tokens
        self._inflight = asyncio.Semaphore(max_inflight)
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout_s
        )
        # Only text-embedding-3 and later accept `dimensions`; older models 400 on it.
        self._dimensions: int | openai.Omit = (
            dimensions if model.startswith("text-embedding-3") else openai.omit
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def embed(self, texts: list[str], then: Keep | None = None) -> EmbeddingResult:
        """Vectors for `texts` in order. With `then` (for one request's worth of texts), the
        result is handed to `then` while the in-flight slot is still held: paid-for vectors
        are saved before another request starts, so a crash loses at most `max_inflight`."""
        counts = [count_tokens(t) for t in texts]
        batches = plan_batches(counts, self.batch_inputs, self.batch_tokens)
        if then is not None:
            async with self._inflight:
                results = [await self._request([texts[i] for i in b]) for b in batches]
                vectors = [v for vecs, _ in results for v in vecs]
                result = EmbeddingResult(vectors, sum(n for _, n in results), len(batches))
                await then(result)
            return result
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._embed_batch([texts[i] for i in b])) for b in batches]
        except ExceptionGroup as eg:
            raise _most_severe(eg)  # noqa: B904 - keep the SDK error as its cause
        results = [t.result() for t in tasks]
        vectors = [v for vecs, _ in results for v in vecs]
        return EmbeddingResult(vectors, sum(n for _, n in results), len(batches))

    async def _embed_batch(self, batch: list[str]) -> tuple[list[list[float]], int]:
        async with self._inflight:
            return await self._request(batch)

    async def _request(self, batch: list[str]) -> tuple[list[list[float]], int]:
        try:
            resp = await self._client.embeddings.create(
                input=batch, model=self.model, dimensions=self._dimensions
            )
        except openai.APIError as e:
            raise _map_error(e) from e
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != len(batch):
            msg = f"asked {len(batch)} embeddings, got {len(data)}"
            raise PermanentError(msg, code="provider_bad_response")
        for d in data:
            _check_vector(d.embedding, self.dimensions)
        return [d.embedding for d in data], resp.usage.total_tokens if resp.usage else 0


def _check_vector(vector: Sequence[float], dimensions: int) -> None:
    if len(vector) != dimensions:
        msg = f"vector has {len(vector)} dimensions, expected {dimensions}"
        raise PermanentError(msg, code="vector_wrong_dimension")
    try:  # JSON has no NaN: a provider may send null or "NaN", which become NaN here
        finite = bool(np.isfinite(np.asarray(vector, dtype=np.float64)).all())
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise PermanentError("vector has NaN or infinite values", code="vector_not_finite")


def _retry_after_s(e: openai.APIStatusError) -> float | None:
    for header, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(e.response.headers[header]) / scale
        except (KeyError, ValueError):
            continue
    return None


def _map_error(e: openai.APIError) -> PipelineError:
    message = f"OpenAI embeddings failed: {e}"
    if isinstance(e, openai.APIConnectionError):  # includes APITimeoutError
        return TransientError(message, code="provider_unavailable")
    if isinstance(e, openai.RateLimitError):
        return TransientError(message, code="provider_rate_limited", defer_s=_retry_after_s(e))
    if isinstance(e, openai.AuthenticationError | openai.PermissionDeniedError):
        return PermanentError(message, code="provider_auth")
    if isinstance(e, openai.BadRequestError):
        return PermanentError(message, code="provider_rejected_input")
    if isinstance(e, openai.APIStatusError) and (
        e.status_code >= 500 or e.status_code in (408, 409)
    ):
        return TransientError(message, code="provider_unavailable", defer_s=_retry_after_s(e))
    return PermanentError(message, code="provider_error")


def _most_severe(eg: ExceptionGroup) -> BaseException:
    """The error to report for failed batches: permanent beats transient beats the rest."""
    errors = eg.exceptions
    for kind in (PermanentError, PipelineError):
        if found := next((e for e in errors if isinstance(e, kind)), None):
            return found
    return eg


def make_provider(settings: Settings, model: str | None = None) -> EmbeddingProvider:
    """The provider `settings.embed_provider` names, for `model` (default: the configured)."""
    if settings.embed_provider != "openai":
        raise ValueError(f"embed_provider {settings.embed_provider!r} is not available")
    return OpenAIProvider(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        model=model or settings.embed_model,
        dimensions=settings.embed_dimensions,
        batch_inputs=settings.embed_batch_inputs,
        batch_tokens=settings.embed_batch_tokens,
        max_inflight=settings.embed_max_inflight,
    )
