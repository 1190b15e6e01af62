"""The lagThresholds in infra/k8s/base, replayed through accessa.ops.scaling's KEDA/HPA loop.

A burst the stage is sized for must scale out and stay within the stage's queue budget; the
same burst with a lagThreshold nobody reaches must breach it (so the check can fail).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from accessa.ops.scaling import (
    ScalingPolicy,
    burst_arrivals,
    desired_replicas,
    lag_threshold_for,
    simulate,
)
from schemas.topics import STAGES

BASE = Path(__file__).resolve().parents[2] / "infra" / "k8s" / "base"

# Per-replica throughput, records (= documents) per second, that each base lagThreshold was
# derived from (docs/scaling.md; the derivation is in each ScaledObject's comment). Replace
# with `make bench` figures when they change, then recompute the thresholds.
# chunker and finalizer: measured (make bench --only capacity) per 50-chunk document;
# parser and embedder: provider-bound (docs/scaling.md).
MSGS_PER_S = {"parser": 0.5, "chunker": 18.5, "embedder": 2.0, "finalizer": 22.7}
STAGE_BUDGET_S = 60.0  # p95 time in one stage's queue; 4 stages + work fit the 300 s SLA
STARTUP_S = 20  # pod scheduled -> partitions assigned and consuming


def _scaled_object(stage: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((BASE / f"{stage}.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "ScaledObject")


def _policy(stage: str, **overrides: Any) -> ScalingPolicy:
    return ScalingPolicy.from_scaled_object(_scaled_object(stage), startup_s=STARTUP_S, **overrides)


def _burst(stage: str, policy: ScalingPolicy, times_sized: float = 1.0) -> list[float]:
    """20 % background load, then max replicas x lagThreshold extra records within 10 s."""
    return burst_arrivals(
        background_per_s=0.2 * MSGS_PER_S[stage],
        burst=times_sized * policy.max_replicas * policy.lag_threshold,
        burst_at_s=60,
        burst_len_s=10,
        total_s=900,
    )


# --- the formula


def test_desired_replicas_is_ceil_of_lag_over_threshold() -> None:
    policy = ScalingPolicy(lag_threshold=10, min_replicas=1, max_replicas=6)
    assert desired_replicas(0, policy) == 1
    assert desired_replicas(10, policy) == 1
    assert desired_replicas(11, policy) == 2
    assert desired_replicas(45, policy) == 5
    assert desired_replicas(10_000, policy) == 6


def test_activation_threshold_only_gates_scaling_from_zero() -> None:
    from_zero = ScalingPolicy(lag_threshold=10, activation_lag_threshold=5, min_replicas=0)
    assert desired_replicas(5, from_zero) == 0
    assert desired_replicas(6, from_zero) == 1
    always_on = ScalingPolicy(lag_threshold=10, activation_lag_threshold=5, min_replicas=1)
    assert desired_replicas(0, always_on) == 1


def test_scale_up_waits_for_polling_and_start_up() -> None:
    policy = ScalingPolicy(lag_threshold=10, max_replicas=6, polling_interval_s=15, startup_s=20)
    result = simulate([60.0], policy=policy, msgs_per_s=0.1)
    assert result.first_scale_up_s() == 20  # seen at t=0, consuming 20 s later
    assert result.peak_replicas == 6


def test_lag_threshold_for_leaves_room_for_polling_and_start_up() -> None:
    assert lag_threshold_for(1.0, budget_s=60, polling_interval_s=15, startup_s=20, safety=1) == 25
    with pytest.raises(ValueError):
        lag_threshold_for(1.0, budget_s=30, polling_interval_s=15, startup_s=20)


# --- the configured thresholds


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_base_threshold_derives_from_measured_throughput(stage: str) -> None:
    policy = _policy(stage)
    expected = lag_threshold_for(
        MSGS_PER_S[stage],
        budget_s=STAGE_BUDGET_S,
        polling_interval_s=policy.polling_interval_s,
        startup_s=STARTUP_S,
    )
    assert policy.lag_threshold == expected


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_burst_scales_out_before_the_budget_is_breached(stage: str) -> None:
    policy = _policy(stage)
    arrivals = _burst(stage, policy)
    scaled = simulate(arrivals, policy=policy, msgs_per_s=MSGS_PER_S[stage])
    assert scaled.peak_replicas > policy.min_replicas
    first_up = scaled.first_scale_up_s()
    assert first_up is not None and first_up - 60 < STAGE_BUDGET_S
    assert scaled.meets(STAGE_BUDGET_S), f"p95 {scaled.p95_wait_s:.0f}s"
    # Without scaling, the same burst would have breached: the replicas are what saved it.
    one_size = _policy(stage, max_replicas=policy.min_replicas)
    fixed = simulate(arrivals, policy=one_size, msgs_per_s=MSGS_PER_S[stage])
    assert not fixed.meets(STAGE_BUDGET_S)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_huge_lag_threshold_breaches_the_budget(stage: str) -> None:
    policy = _policy(stage)
    arrivals = _burst(stage, policy)
    huge = _policy(stage, lag_threshold=1_000_000)
    lazy = simulate(arrivals, policy=huge, msgs_per_s=MSGS_PER_S[stage])
    assert lazy.peak_replicas == policy.min_replicas
    assert not lazy.meets(STAGE_BUDGET_S), f"p95 {lazy.p95_wait_s:.0f}s"


def test_partitions_cap_what_scaling_can_absorb() -> None:
    """Three times the sized burst is beyond max replicas: more partitions, not a threshold."""
    policy = _policy("parser")
    result = simulate(_burst("parser", policy, times_sized=3), policy=policy, msgs_per_s=0.5)
    assert result.peak_replicas == policy.max_replicas
    assert not result.meets(STAGE_BUDGET_S)


def test_scale_down_is_slow_and_returns_to_min() -> None:
    """One pod a minute, after the stabilization window: each step is a rebalance."""
    policy = _policy("chunker")
    result = simulate(_burst("chunker", policy), policy=policy, msgs_per_s=10.0)
    drops = [t for t in range(1, len(result.ready)) if result.ready[t] < result.ready[t - 1]]
    assert drops, "never scaled back down"
    assert drops[0] - 60 >= policy.scale_down_window_s
    assert all(b - a >= 60 for a, b in itertools.pairwise(drops))
    assert result.ready[-1] == policy.min_replicas
