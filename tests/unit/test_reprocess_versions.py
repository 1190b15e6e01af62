"""Versions a reprocess can target: chunker version strings, embedding models, requests."""

from __future__ import annotations

import uuid

import pytest

from accessa.config import Settings
from accessa.ops.reprocess import entry_event, resolve_target
from consumers.chunker.chunking import ChunkerSpec, chunk_markdown, resolve_version
from consumers.embedder.models import check_model
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf
from producer_api.job_retry import rebuild_event
from schemas.events import ChunksCreated, DocumentParsed

DEFAULTS = {"target_tokens": 512, "overlap_tokens": 64}


@pytest.mark.parametrize(
    ("version", "spec"),
    [
        ("markdown-simple@1", ChunkerSpec("markdown-simple@1", 512, 64)),
        ("markdown-simple@1?target=256", ChunkerSpec("markdown-simple@1?target=256", 256, 64)),
        (
            "markdown-simple@1?overlap=32&target=256",
            ChunkerSpec("markdown-simple@1?target=256&overlap=32", 256, 32),
        ),
        ("markdown-simple@1?overlap=0", ChunkerSpec("markdown-simple@1?overlap=0", 512, 0)),
        ("markdown-simple@2", ChunkerSpec("markdown-simple@2", 512, 64)),
        ("markdown-simple@2?target=256", ChunkerSpec("markdown-simple@2?target=256", 256, 64)),
    ],
)
def test_a_chunker_version_resolves_to_its_canonical_spelling_and_budget(
    version: str, spec: ChunkerSpec
) -> None:
    assert resolve_version(version, **DEFAULTS) == spec


@pytest.mark.parametrize(
    "version",
    [
        "markdown-simple@3",
        "other@1",
        "markdown-simple@1?",
        "markdown-simple@1?target=abc",
        "markdown-simple@1?target=16",
        "markdown-simple@1?target=9000",
        "markdown-simple@1?target=256&target=128",
        "markdown-simple@1?size=256",
        "markdown-simple@1?target=100&overlap=60",
    ],
)
def test_an_unknown_or_out_of_range_chunker_version_is_refused(version: str) -> None:
    with pytest.raises(ValueError):
        resolve_version(version, **DEFAULTS)


def test_a_pinned_budget_gives_other_chunks_with_other_ids() -> None:
    markdown = parse_pdf(make_policy_pdf(seed=7, pages=2)).markdown
    doc = uuid.UUID(int=7)
    plain = chunk_markdown(markdown, document_id=doc, version="markdown-simple@1")
    spec = resolve_version("markdown-simple@1?target=128", **DEFAULTS)
    small = chunk_markdown(
        markdown,
        document_id=doc,
        version=spec.version,
        target_tokens=spec.target_tokens,
        overlap_tokens=spec.overlap_tokens,
    )
    assert len(small) > len(plain)
    assert max(c.token_count for c in small) <= 128
    assert not {c.chunk_id for c in small} & {c.chunk_id for c in plain}


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [
        ("text-embedding-3-small", 1536),
        ("text-embedding-3-large", 1536),
        ("text-embedding-3-large", 3072),
        ("text-embedding-ada-002", 1536),
    ],
)
def test_models_that_can_embed_at_the_configured_dimensions_are_accepted(
    model: str, dimensions: int
) -> None:
    check_model(model, dimensions)


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [("text-embedding-4", 1536), ("text-embedding-ada-002", 512), ("text-embedding-3-small", 3072)],
)
def test_models_that_cannot_embed_at_the_configured_dimensions_are_refused(
    model: str, dimensions: int
) -> None:
    with pytest.raises(ValueError):
        check_model(model, dimensions)


def test_a_reprocess_request_defaults_to_the_configured_versions() -> None:
    settings = Settings(chunker_version="markdown-simple@1", embed_model="text-embedding-3-small")
    chunk = resolve_target(settings, "chunk")
    assert (chunk.chunker_version, chunk.embed_model) == (
        "markdown-simple@1",
        "text-embedding-3-small",
    )
    embed = resolve_target(settings, "embed", embed_model="text-embedding-3-large")
    assert (embed.chunker_version, embed.embed_model) == (None, "text-embedding-3-large")


@pytest.mark.parametrize(
    ("from_stage", "chunker_version", "embed_model"),
    [
        ("parse", None, None),
        ("embed", "markdown-simple@1?target=256", None),
        ("chunk", "markdown-simple@9", None),
        ("chunk", None, "text-embedding-9"),
    ],
)
def test_an_impossible_reprocess_request_is_refused(
    from_stage: str, chunker_version: str | None, embed_model: str | None
) -> None:
    with pytest.raises(ValueError):
        resolve_target(Settings(), from_stage, chunker_version, embed_model)


def test_event_ids_of_a_reprocess_differ_by_target_version() -> None:
    job = uuid.uuid4()
    v1 = DocumentParsed.make_id(job, "reprocess", "markdown-simple@1", "text-embedding-3-small")
    v2 = DocumentParsed.make_id(
        job, "reprocess", "markdown-simple@1?target=256", "text-embedding-3-small"
    )
    large = ChunksCreated.make_id(job, "markdown-simple@1", "text-embedding-3-large")
    small = ChunksCreated.make_id(job, "markdown-simple@1", "text-embedding-3-small")
    assert len({v1, v2, large, small, ChunksCreated.make_id(job, "markdown-simple@1")}) == 5


def test_an_api_retry_of_a_reprocess_job_re_emits_its_target_version_with_the_same_ids() -> None:
    request = {
        "from_stage": "chunk",
        "chunker_version": "markdown-simple@1?target=256",
        "embed_model": "text-embedding-3-large",
    }
    job: dict[str, object] = {
        "job_id": uuid.uuid4(),
        "document_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "correlation_id": "reprocess-x",
        "chunks_version": request["chunker_version"],
        "embed_model": request["embed_model"],
        "chunk_count": None,
        "parsed_path": "p.md",
        "parsed_sha256": "a" * 64,
        "pages": 2,
        "embed_tokens": 0,
        "reprocess": request,
    }
    retried = rebuild_event(job, "chunker", Settings())
    assert isinstance(retried, DocumentParsed)
    assert retried.event_id == entry_event(job).event_id
    assert (retried.chunker_version, retried.embed_model) == (
        request["chunker_version"],
        request["embed_model"],
    )

    job["chunk_count"] = 9  # the chunker got through: the embedder failed
    retried = rebuild_event(job, "embedder", Settings())
    assert isinstance(retried, ChunksCreated)
    assert retried.embed_model == request["embed_model"]
    assert isinstance(job["job_id"], uuid.UUID)
    assert retried.event_id == ChunksCreated.make_id(
        job["job_id"], request["chunker_version"], request["embed_model"]
    )


def test_a_reprocess_can_target_chunker_v2_beside_v1() -> None:
    settings = Settings(chunker_version="markdown-simple@1")
    target = resolve_target(settings, "chunk", "markdown-simple@2")
    assert target.chunker_version == "markdown-simple@2"
    markdown = parse_pdf(make_policy_pdf(seed=7, pages=2)).markdown
    doc = uuid.UUID(int=7)
    v1 = chunk_markdown(markdown, document_id=doc, version="markdown-simple@1")
    v2 = chunk_markdown(markdown, document_id=doc, version=target.chunker_version)
    assert not {c.chunk_id for c in v1} & {c.chunk_id for c in v2}


def test_the_configured_chunker_version_may_be_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESSA_CHUNKER_VERSION", "markdown-simple@2")
    settings = Settings()
    assert resolve_target(settings, "chunk").chunker_version == "markdown-simple@2"
