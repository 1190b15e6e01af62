"""Topic names. uploaded -> parser -> parsed -> chunker -> chunked -> embedder -> embedded
-> finalizer -> completed. Each input topic has `.retry.<n>` topics and a `.dlq`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StageName = Literal["parser", "chunker", "embedder", "finalizer"]


@dataclass(frozen=True)
class Stage:
    name: StageName
    input: str
    output: str
    failed_status: str


STAGES: dict[str, Stage] = {
    "parser": Stage("parser", "uploaded", "parsed", "failed_parse"),
    "chunker": Stage("chunker", "parsed", "chunked", "failed_chunking"),
    "embedder": Stage("embedder", "chunked", "embedded", "failed_embedding"),
    "finalizer": Stage("finalizer", "embedded", "completed", "failed_embedding"),
}


class Topics:
    """Topic names under an optional prefix (test runs use a unique prefix)."""

    UPLOADED = "uploaded"
    PARSED = "parsed"
    CHUNKED = "chunked"
    EMBEDDED = "embedded"
    COMPLETED = "completed"
    MAIN = (UPLOADED, PARSED, CHUNKED, EMBEDDED, COMPLETED)

    def __init__(self, prefix: str = "", retry_attempts: int = 3) -> None:
        self.prefix = prefix
        self.retry_attempts = retry_attempts

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    def retry(self, base: str, attempt: int) -> str:
        return f"{self.prefix}{base}.retry.{attempt}"

    def dlq(self, base: str) -> str:
        return f"{self.prefix}{base}.dlq"

    def all(self) -> list[str]:
        """Every topic the platform creates."""
        names = [self.name(t) for t in self.MAIN]
        for stage in STAGES.values():
            names += [self.retry(stage.input, n) for n in range(1, self.retry_attempts + 1)]
            names.append(self.dlq(stage.input))
        return names
