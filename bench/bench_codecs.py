"""The event codec (issue 20 item 4): encodes and decodes per second of the hot events with
pydantic, as `schemas.events` does today (`Event.to_bytes`, `decode_event`), against orjson
(parsing and dumping, pydantic still validating) and msgspec (typed structs mirroring the
models, with the same constraints). Also which bad inputs each side refuses: a faster codec
is adopted only if it refuses the same ones.

`python -m bench.bench_codecs` prints the figures; `make bench` stores them as
`event_codecs` (`--only hotpaths`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta

from schemas.errors import PoisonMessage
from schemas.events import (
    ChunksCreated,
    ChunksEmbedded,
    DocumentParsed,
    DocumentUploaded,
    Event,
    PageQuality,
    decode_event,
)

Sha = Annotated[str, Meta(min_length=64, max_length=64)]
Count = Annotated[int, Meta(ge=0)]
Share = Annotated[float, Meta(ge=0, le=1)]


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    """schemas.events.Event as a msgspec struct (unknown fields ignored, as there)."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    job_id: uuid.UUID
    document_id: uuid.UUID
    user_id: uuid.UUID
    correlation_id: str
    occurred_at: datetime = msgspec.field(default_factory=_now)


class _Uploaded(_Event, frozen=True, kw_only=True):
    storage_path: str
    sha256: Sha
    size: Annotated[int, Meta(ge=1)]
    filename: str
    mime: str = "application/pdf"


class _Page(msgspec.Struct, frozen=True, kw_only=True):
    page: Annotated[int, Meta(ge=1)]
    text_words: Count = 0
    ocr_words: Count = 0
    ocr_confidence: Share | None = None
    image_coverage: Share = 0.0


class _Parsed(_Event, frozen=True, kw_only=True):
    parsed_path: str
    parsed_sha256: Sha
    pages: Count
    parser: str
    page_stats: list[_Page] = msgspec.field(default_factory=list)
    chunker_version: str | None = None
    embed_model: str | None = None


class _Created(_Event, frozen=True, kw_only=True):
    chunker_version: str
    chunk_count: Count
    parsed_sha256: str
    embed_model: str | None = None


class _Embedded(_Event, frozen=True, kw_only=True):
    chunker_version: str
    embed_model: str
    dimensions: Annotated[int, Meta(ge=1)]
    chunk_count: Count
    parsed_sha256: str
    tokens: Count = 0


def hot_events(pages: int = 30) -> list[tuple[Event, type[msgspec.Struct]]]:
    """One of each hot event, as the stages emit them, with its msgspec mirror."""
    job, doc, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    common: dict[str, Any] = {
        "job_id": job,
        "document_id": doc,
        "user_id": user,
        "correlation_id": str(uuid.uuid4()),
    }
    sha = "ab" * 32
    stats = [
        PageQuality(page=n, text_words=400 + n, image_coverage=0.12, ocr_confidence=None)
        for n in range(1, pages + 1)
    ]
    return [
        (
            DocumentUploaded(
                **common,
                event_id=DocumentUploaded.make_id(job),
                storage_path=f"raw/{user}/{doc}.pdf",
                sha256=sha,
                size=1_045_343,
                filename="homeowners-policy-2026.pdf",
            ),
            _Uploaded,
        ),
        (
            DocumentParsed(
                **common,
                event_id=DocumentParsed.make_id(job),
                parsed_path=f"parsed/{user}/{doc}.md",
                parsed_sha256=sha,
                pages=pages,
                parser="local:pypdfium2",
                page_stats=stats,
            ),
            _Parsed,
        ),
        (
            ChunksCreated(
                **common,
                event_id=ChunksCreated.make_id(job, "markdown-simple@1"),
                chunker_version="markdown-simple@1",
                chunk_count=42,
                parsed_sha256=sha,
            ),
            _Created,
        ),
        (
            ChunksEmbedded(
                **common,
                event_id=ChunksEmbedded.make_id(job, "markdown-simple@1", "mock"),
                chunker_version="markdown-simple@1",
                embed_model="text-embedding-3-small",
                dimensions=1536,
                chunk_count=42,
                parsed_sha256=sha,
                tokens=9_000,
            ),
            _Embedded,
        ),
    ]


def _per_s(work: Callable[[], object], n: int, rounds: int) -> float:
    """Calls per second of `work`, the best of `rounds` runs of `n` calls."""
    for _ in range(n // 10):  # warm-up (first-call caches)
        work()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            work()
        best = min(best, time.perf_counter() - started)
    return n / best


def _sides(
    event: Event, struct: type[msgspec.Struct]
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """(encode, decode) of each side, on the event's JSON as the pipeline writes it."""
    model = type(event)
    raw = event.to_bytes()
    as_struct = msgspec.json.decode(raw, type=struct)
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder(struct)
    return {
        "pydantic": (event.to_bytes, lambda: decode_event(model, raw)),
        "orjson+pydantic": (
            lambda: orjson.dumps(event.model_dump()),
            lambda: model.model_validate(orjson.loads(raw)),
        ),
        "msgspec": (lambda: encoder.encode(as_struct), lambda: decoder.decode(raw)),
    }


# Inputs on which lax pydantic and strict msgspec may disagree: each gives (field, value).
_PROBES: dict[str, tuple[str, Any]] = {
    "size as a numeric string": ("size", "1045343"),
    "size as a whole float": ("size", 1045343.0),
    "size 0 (ge=1)": ("size", 0),
    "sha256 too short": ("sha256", "ab"),
    "uuid without hyphens": ("job_id", uuid.uuid4().hex),
    "occurred_at as epoch seconds": ("occurred_at", 1_780_000_000),
    "occurred_at as a date": ("occurred_at", "2026-12-07"),
    "schema_version 2": ("schema_version", 2),
    "correlation_id as a number": ("correlation_id", 7),
}


def _refuses(decode: Callable[[bytes], object], raw: bytes) -> bool:
    try:
        decode(raw)
    except (PoisonMessage, msgspec.ValidationError, ValueError):
        return True
    return False


def verdicts(event: DocumentUploaded) -> dict[str, dict[str, bool]]:
    """Per probe, whether pydantic (`decode_event`) and msgspec, strict (its default, the
    one measured) and lax (`strict=False`, nearer pydantic's coercions), each refuse it."""
    strict = msgspec.json.Decoder(_Uploaded)
    lax = msgspec.json.Decoder(_Uploaded, strict=False)
    base = json.loads(event.to_bytes())
    out = {}
    for name, (field, value) in _PROBES.items():
        raw = json.dumps({**base, field: value}).encode()
        out[name] = {
            "pydantic_refuses": _refuses(lambda r: decode_event(DocumentUploaded, r), raw),
            "msgspec_refuses": _refuses(strict.decode, raw),
            "msgspec_lax_refuses": _refuses(lax.decode, raw),
        }
    return out


def run(n: int = 5_000, rounds: int = 3) -> dict[str, Any]:
    """Encodes and decodes per second per event and side, and each side ÷ pydantic."""
    out: dict[str, Any] = {"calls": n, "rounds": rounds}
    for event, struct in hot_events():
        # The mirror must read the pipeline's bytes to the same values, or it measures nothing.
        mirrored = msgspec.to_builtins(msgspec.json.decode(event.to_bytes(), type=struct))
        if mirrored != json.loads(event.to_bytes()):
            raise AssertionError(f"the msgspec mirror of {type(event).__name__} differs")
        figures: dict[str, Any] = {"bytes": len(event.to_bytes())}
        for side, (encode, decode) in _sides(event, struct).items():
            figures[side] = {
                "encode_per_s": round(_per_s(encode, n, rounds)),
                "decode_per_s": round(_per_s(decode, n, rounds)),
            }
        base = figures["pydantic"]
        for side in ("orjson+pydantic", "msgspec"):
            figures[side]["encode_x"] = round(
                figures[side]["encode_per_s"] / base["encode_per_s"], 2
            )
            figures[side]["decode_x"] = round(
                figures[side]["decode_per_s"] / base["decode_per_s"], 2
            )
        out[type(event).__name__] = figures
    uploaded = hot_events()[0][0]
    assert isinstance(uploaded, DocumentUploaded)
    probes = verdicts(uploaded)
    out["bad_input_verdicts"] = probes
    for side in ("msgspec", "msgspec_lax"):
        out[f"{side}_same_verdicts"] = all(
            v["pydantic_refuses"] == v[f"{side}_refuses"] for v in probes.values()
        )
    return out


if __name__ == "__main__":
    print(json.dumps({"event_codecs": run()}, indent=2))
