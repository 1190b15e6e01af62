"""What `markdown-simple@2` adds to @1: small sections merged, and a contextual header.

- Adjacent sections under the same parent heading (siblings, or a parent and its first
  children) are merged while the whole fits the budget, so a one-line section ("What you'll
  get: up to $300") is embedded with its neighbours instead of as a vector of its own. The
  merged chunk's heading path is the parent's; the sections' headings stay in its text.
- The embedding input is `embed_header(title, path)` + the chunk text; the stored and shown
  text stays the clean chunk. The header is in chunk metadata (`embed_header`, with the
  SHA-256 of the full input as `embed_sha256`, the embedding-cache key), so no column and
  no migration are needed and @1 chunks (no such keys) embed exactly as before.
"""

from __future__ import annotations

import hashlib
import re

_TITLE = re.compile(r"^ {0,3}#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def document_title(markdown: str) -> str:
    """The first level-1 heading, else ""."""
    match = _TITLE.search(markdown)
    return match.group(1).strip() if match else ""


def embed_header(title: str, path: list[str]) -> str:
    """The context that precedes a chunk's text in its embedding input ("" if none)."""
    lines = []
    if title:
        lines.append(f"Document: {title}")
    if path and path != [title]:
        lines.append(f"Section: {' > '.join(path)}")
    return "\n".join(lines) + "\n\n" if lines else ""


def embed_sha256(header: str, content: str) -> str:
    return hashlib.sha256((header + content).encode("utf-8", "surrogatepass")).hexdigest()


def mergeable(group_path: list[str], path: list[str]) -> list[str] | None:
    """The merged path if a section at `path` may join a group at `group_path`: they share
    a parent heading (one level up from the deeper of the two, at most). None: keep apart."""
    common: list[str] = []
    for a, b in zip(group_path, path, strict=False):
        if a != b:
            break
        common.append(a)
    if not common or len(common) < max(len(group_path), len(path)) - 1:
        return None
    return common


def embed_metadata(chunk: object) -> dict[str, str]:
    """The chunk-metadata keys the embedder reads (none for @1 chunks)."""
    header = getattr(chunk, "embed_header", "")
    return (
        {"embed_header": header, "embed_sha256": getattr(chunk, "embed_sha256", "")}
        if header
        else {}
    )
