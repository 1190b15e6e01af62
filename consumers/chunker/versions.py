"""The chunker versions and their parameters.

`markdown-simple@1` packs to the configured budget; `markdown-simple@1?target=N[&overlap=M]`
pins the budget in the version string, so its chunk ids differ and it can live beside the
plain version (`accessa reprocess --chunker-version`). `markdown-simple@2` (same parameters)
also merges small sections under one parent heading and gives each chunk a contextual header
for its embedding input (`contextual.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from accessa.tokens import MAX_EMBED_TOKENS

CHUNKER_VERSION = "markdown-simple@1"
CHUNKER_V2 = "markdown-simple@2"
CHUNKERS = (CHUNKER_VERSION, CHUNKER_V2)


@dataclass(frozen=True)
class ChunkerSpec:
    """A chunker version resolved to the budget it packs to."""

    version: str  # canonical spelling: what chunk ids and `chunker_version` columns hold
    target_tokens: int
    overlap_tokens: int


def resolve_version(version: str, *, target_tokens: int, overlap_tokens: int) -> ChunkerSpec:
    """The spec of `version`; parameters it does not pin come from the given defaults.
    Raises ValueError for an unknown chunker, parameter or out-of-range value."""
    name, sep, query = version.partition("?")
    if name not in CHUNKERS:
        raise ValueError(f"unknown chunker {name!r} (known: {', '.join(CHUNKERS)})")
    pinned: dict[str, int] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if sep else []
    except ValueError as exc:
        raise ValueError(f"{version!r}: parameters must read key=value&key=value") from exc
    if sep and not pairs:
        raise ValueError(f"{version!r}: nothing after '?'")
    for key, value in pairs:
        if key not in ("target", "overlap") or key in pinned or not value.isdigit():
            raise ValueError(f"{version!r}: {key}={value} (give target=N and/or overlap=M once)")
        pinned[key] = int(value)
    target = pinned.get("target", target_tokens)
    overlap = pinned.get("overlap", overlap_tokens)
    if "target" in pinned and not 32 <= target <= MAX_EMBED_TOKENS:
        raise ValueError(f"{version!r}: target must be 32..{MAX_EMBED_TOKENS} tokens")
    if "overlap" in pinned and overlap > target // 2:
        raise ValueError(f"{version!r}: overlap must be at most half the target ({target // 2})")
    params = "&".join(f"{k}={pinned[k]}" for k in ("target", "overlap") if k in pinned)
    return ChunkerSpec(f"{name}?{params}" if params else name, target, overlap)
