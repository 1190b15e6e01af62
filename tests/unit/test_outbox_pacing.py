"""When a woken outbox relay claims: at once when idle, after a short gather when busy."""

from __future__ import annotations

import pytest

from producer_api.outbox import WAKE_MIN_INTERVAL_S, pause_before_claim


@pytest.mark.parametrize("published", [0, 1])
def test_an_idle_relay_claims_at_once_even_right_after_its_last_claim(published: int) -> None:
    assert pause_before_claim(published, since_last_claim_s=0.001) == 0.0


def test_a_busy_relay_lets_rows_gather_until_the_interval_since_its_last_claim() -> None:
    assert pause_before_claim(5, since_last_claim_s=0.03) == pytest.approx(
        WAKE_MIN_INTERVAL_S - 0.03
    )


def test_a_busy_relay_woken_after_the_interval_claims_at_once() -> None:
    assert pause_before_claim(5, since_last_claim_s=WAKE_MIN_INTERVAL_S + 0.01) == 0.0
