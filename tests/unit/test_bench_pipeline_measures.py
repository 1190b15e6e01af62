"""What `make bench` derives from a pipeline run: ramp-up apart from the steady rate, and the
peer's HNSW parameters taken from our index."""

from __future__ import annotations

import pytest

from bench.bench_pipeline import steady_state
from bench.peer_llamaindex import hnsw_options


def test_steady_rate_leaves_out_the_ramp_up_and_the_drain() -> None:
    # 2 s before the first completion, then 10 documents/s, then a slow tail of stragglers.
    completions = [2 + i / 10 for i in range(80)] + [12, 14, 16, 18, 20]
    result = steady_state(0.0, completions, trim=0.1)
    assert result["first_complete_s"] == 2.0
    assert result["steady_docs_per_s"] == pytest.approx(10, rel=0.02)
    # The whole-run rate (85 documents in 20 s) is what the stragglers drag down.
    assert len(completions) / 20 < 5


def test_steady_rate_is_order_independent_and_none_without_a_window() -> None:
    assert steady_state(0.0, [3.0, 1.0, 2.0, 4.0, 5.0], trim=0.0)["steady_docs_per_s"] == 1.0
    assert steady_state(0.0, [1.0])["steady_docs_per_s"] is None
    assert steady_state(0.0, [1.0, 1.0, 1.0])["steady_docs_per_s"] is None
    assert steady_state(0.0, [])["first_complete_s"] is None


@pytest.mark.parametrize(
    "indexdef",
    [
        "CREATE INDEX document_chunks_embedding_hnsw ON upload_pipeline.document_chunks "
        "USING hnsw (embedding vector_cosine_ops) WITH (m='16', ef_construction='32')",
        "CREATE INDEX document_chunks_embedding_bq_hnsw ON upload_pipeline.document_chunks "
        "USING hnsw (((binary_quantize(embedding))::bit(1536)) bit_hamming_ops) "
        "WITH (m='16', ef_construction='32')",
    ],
)
def test_the_peer_copies_m_and_ef_construction_from_our_index(indexdef: str) -> None:
    assert hnsw_options(indexdef) == {"hnsw_m": 16, "hnsw_ef_construction": 32}


def test_the_peer_refuses_an_index_without_hnsw_parameters() -> None:
    with pytest.raises(ValueError, match="HNSW"):
        hnsw_options("CREATE INDEX i ON t USING btree (x)")
