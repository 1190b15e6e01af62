"""KEDA lag scaling, simulated: how long records wait in a stage when a burst arrives.

KEDA's kafka scaler gives the HPA the consumer group's total lag with an `AverageValue` target
of `lagThreshold`, so the HPA wants `ceil(lag / lagThreshold)` replicas, kept within
[minReplicaCount, maxReplicaCount] (and 0 while lag <= activationLagThreshold if min is 0).
The lag is re-read every `pollingInterval` (15 s, also the HPA sync period); one step grows by
at most max(+4 pods, x2) (the HPA default); a new pod consumes only after its start-up (image,
imports, group join) and every membership change pauses the group for a rebalance.
Scale-down keeps the highest recommendation of a stabilization window, one pod a minute.

`simulate` replays arrivals (records per second) through that loop one second at a time with a
FIFO queue and reports each record's time in the stage; docs/scaling.md explains how
`lag_threshold_for` turns a measured per-replica rate into the ScaledObject's lagThreshold.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HPA_SCALE_UP_PODS = 4  # HPA default scale-up: max(+4 pods, +100 %) per period


@dataclass(frozen=True)
class ScalingPolicy:
    """The ScaledObject fields that matter, plus the pod start-up time they cannot express."""

    lag_threshold: float
    activation_lag_threshold: float = 0.0
    min_replicas: int = 1
    max_replicas: int = 6
    polling_interval_s: int = 15
    startup_s: int = 20
    rebalance_s: int = 3
    scale_down_window_s: int = 300
    scale_down_pods_per_min: int = 1

    @classmethod
    def from_scaled_object(cls, obj: Mapping[str, Any], **overrides: Any) -> ScalingPolicy:
        """Read a keda.sh/v1alpha1 ScaledObject (as parsed YAML) with a kafka trigger."""
        spec = obj["spec"]
        meta = spec["triggers"][0]["metadata"]
        behavior = (
            spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
        )
        down = behavior.get("scaleDown", {})
        values: dict[str, Any] = {
            "lag_threshold": float(meta["lagThreshold"]),
            "activation_lag_threshold": float(meta.get("activationLagThreshold", 0)),
            "min_replicas": int(spec.get("minReplicaCount", 0)),
            "max_replicas": int(spec.get("maxReplicaCount", 100)),
            "polling_interval_s": int(spec.get("pollingInterval", 30)),
            "scale_down_window_s": int(down.get("stabilizationWindowSeconds", 300)),
        }
        return cls(**(values | overrides))


def desired_replicas(lag: float, policy: ScalingPolicy) -> int:
    """KEDA + HPA: ceil(lag / lagThreshold) within [min, max]; 0 only below activation."""
    if policy.min_replicas == 0 and lag <= policy.activation_lag_threshold:
        return 0
    want = math.ceil(lag / policy.lag_threshold) if lag > 0 else 0
    return max(policy.min_replicas, 1, min(policy.max_replicas, want))


def lag_threshold_for(
    msgs_per_s: float,
    *,
    budget_s: float = 60.0,
    polling_interval_s: float = 15.0,
    startup_s: float = 20.0,
    safety: float = 1.25,
) -> int:
    """lagThreshold such that a replica's share of a backlog drains within the stage budget.

    A burst waits up to one polling interval to be seen and a start-up for new pods; what is
    left of the budget is the time a replica has for its `lagThreshold` records.
    """
    usable = budget_s - polling_interval_s - startup_s
    if usable <= 0:
        raise ValueError(f"budget {budget_s}s leaves no time after polling and start-up")
    return max(1, math.floor(msgs_per_s * usable / safety))


def burst_arrivals(
    *, background_per_s: float, burst: float, burst_at_s: int, burst_len_s: int, total_s: int
) -> list[float]:
    """A steady background rate plus `burst` extra records spread over `burst_len_s`."""
    series = [background_per_s] * total_s
    for t in range(burst_at_s, min(burst_at_s + burst_len_s, total_s)):
        series[t] += burst / burst_len_s
    return series


@dataclass
class SimulationResult:
    """Per-second lag and ready replicas, and every record's time in the stage."""

    waits: list[tuple[float, float]] = field(default_factory=list)  # (seconds, records)
    lag: list[float] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    drained: bool = True

    @property
    def max_wait_s(self) -> float:
        return max((w for w, _ in self.waits), default=0.0)

    def wait_quantile(self, q: float) -> float:
        total = sum(n for _, n in self.waits)
        seen = 0.0
        for wait, n in sorted(self.waits):
            seen += n
            if seen >= q * total - 1e-9:
                return wait
        return 0.0

    @property
    def p95_wait_s(self) -> float:
        return self.wait_quantile(0.95)

    @property
    def peak_lag(self) -> float:
        return max(self.lag, default=0.0)

    @property
    def peak_replicas(self) -> int:
        return max(self.ready, default=0)

    def first_scale_up_s(self) -> int | None:
        """First second with more ready replicas than at the start."""
        return next((t for t, r in enumerate(self.ready) if r > self.ready[0]), None)

    def meets(self, sla_s: float, quantile: float = 0.95) -> bool:
        return self.drained and self.wait_quantile(quantile) <= sla_s


def simulate(
    arrivals: Sequence[float],
    *,
    policy: ScalingPolicy,
    msgs_per_s: float,
    horizon_s: int = 3600,
) -> SimulationResult:
    """Replay `arrivals` (records per second) against a stage scaled by `policy`.

    Each ready replica handles `msgs_per_s`; runs until the arrivals end and the queue is empty
    (or `horizon_s` more seconds pass: then `drained` is False).
    """
    result = SimulationResult()
    queue: deque[list[float]] = deque()  # [arrival second, records left], oldest first
    pods = [0] * policy.min_replicas  # the second each pod starts consuming
    paused_until = 0
    recommendations: list[tuple[int, int]] = []
    last_scale_down = -math.inf
    end = len(arrivals) + horizon_s
    t = 0
    while t < end and (t < len(arrivals) or queue):
        if t < len(arrivals) and arrivals[t] > 0:
            queue.append([t, arrivals[t]])
        ready = sum(1 for start in pods if start <= t)
        if t > 0 and t in pods:  # a pod joined: the group rebalances
            paused_until = t + policy.rebalance_s
        capacity = ready * msgs_per_s if t >= paused_until else 0.0
        while capacity > 1e-9 and queue:
            head = queue[0]
            done = min(capacity, head[1])
            result.waits.append((t + 1 - head[0], done))
            head[1] -= done
            capacity -= done
            if head[1] <= 1e-9:
                queue.popleft()
        lag = sum(n for _, n in queue)
        result.lag.append(lag)
        result.ready.append(ready)
        if t % policy.polling_interval_s == 0:
            want = desired_replicas(lag, policy)
            recommendations.append((t, want))
            if want > len(pods):
                grow = min(want, max(len(pods) + HPA_SCALE_UP_PODS, 2 * len(pods)))
                pods += [t + policy.startup_s] * (grow - len(pods))
            else:
                window = [w for s, w in recommendations if s > t - policy.scale_down_window_s]
                target = max(window)
                if target < len(pods) and t - last_scale_down >= 60:
                    shrink = min(len(pods) - target, policy.scale_down_pods_per_min)
                    pods = sorted(pods)[: len(pods) - shrink]  # newest pods go first
                    last_scale_down = t
                    paused_until = t + policy.rebalance_s
        t += 1
    for arrived, left in queue:
        result.waits.append((t - arrived, left))
        result.drained = False
    return result
