"""The embedding models the embedder can use, and the check that a model fits the store.

Apart from `providers` so that operators' commands can validate a model without importing
the OpenAI SDK (most of a second at start-up).
"""

from __future__ import annotations

# Every version of every document is stored at ACCESSA_EMBED_DIMENSIONS (one vector column,
# one HNSW index): text-embedding-3 models shorten to it through `dimensions`, older ones
# only embed at their native size.
MODEL_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def check_model(model: str, dimensions: int) -> None:
    """Raise ValueError unless the embedder can embed with `model` at `dimensions`."""
    native = MODEL_DIMENSIONS.get(model)
    if native is None:
        raise ValueError(
            f"unknown embedding model {model!r} (known: {', '.join(MODEL_DIMENSIONS)})"
        )
    shortens = model.startswith("text-embedding-3")
    if dimensions > native or (dimensions != native and not shortens):
        raise ValueError(
            f"{model} cannot embed at {dimensions} dimensions (ACCESSA_EMBED_DIMENSIONS)"
        )
