"""What both mock servers share: simulated faults (a fixed failure sequence from a seed, or
forced statuses) and the `/_mock/config` and `/_mock/reset` control routes."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI


@dataclass
class Simulation:
    """Runtime knobs of a mock. Subclasses add what their mock records."""

    latency_ms: float = 0.0
    failure_rate: float = 0.0
    seed: int = 0
    retry_after_s: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    fail_next: deque[int] = field(default_factory=deque)

    knobs: tuple[str, ...] = ("latency_ms", "failure_rate", "retry_after_s")

    def reset(self) -> None:
        self.rng = random.Random(self.seed)
        self.fail_next.clear()

    def draw_failure(self) -> int | None:
        """The status this request must fail with, or None."""
        if self.fail_next:
            return self.fail_next.popleft()
        if self.failure_rate and self.rng.random() < self.failure_rate:
            return self.rng.choice((429, 429, 500, 503))
        return None

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in self.knobs:
            if key in body:
                setattr(self, key, float(body[key]))
        if "seed" in body:
            self.seed = int(body["seed"])
            self.rng = random.Random(self.seed)
        self.fail_next.extend(int(s) for s in body.get("fail_next", []))
        return {k: getattr(self, k) for k in (*self.knobs, "seed")}


def add_control_routes(app: FastAPI, state: Simulation) -> None:
    @app.post("/_mock/config")
    async def config(body: dict[str, Any]) -> dict[str, Any]:
        return state.configure(body)

    @app.post("/_mock/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}
