"""Stage health ports from ACCESSA_HEALTH_BASE_PORT (`accessa run all --base-port`), so that a
second stack with its own ACCESSA_HOME runs beside the first."""

from __future__ import annotations

from typing import Any

from accessa.cli.run import STAGE_PROCESSES, child_env
from accessa.config import STAGE_PORTS, Settings


def _stack_ports(env: dict[str, str]) -> dict[str, int]:
    """The health ports `run all`'s stage children would bind with this environment."""
    accessa: dict[str, Any] = {
        k.removeprefix("ACCESSA_").lower(): v for k, v in env.items() if k.startswith("ACCESSA_")
    }
    settings = Settings(_env_file=None, **accessa)
    return {stage: settings.port_for(stage) for stage in STAGE_PROCESSES}


def test_default_base_keeps_the_documented_ports() -> None:
    settings = Settings(_env_file=None)
    assert {s: settings.port_for(s) for s in STAGE_PROCESSES} == {
        s: STAGE_PORTS[s] for s in STAGE_PROCESSES
    }


def test_two_run_all_stacks_with_their_own_base_ports_do_not_collide(monkeypatch) -> None:
    for name in ("ACCESSA_HEALTH_PORT", "ACCESSA_HEALTH_BASE_PORT"):
        monkeypatch.delenv(name, raising=False)
    first = _stack_ports(child_env())
    second = _stack_ports(child_env(9200))
    assert first == {"parser": 9101, "chunker": 9102, "embedder": 9103, "finalizer": 9104}
    assert second == {"parser": 9201, "chunker": 9202, "embedder": 9203, "finalizer": 9204}
    assert len({*first.values(), *second.values()}) == 2 * len(STAGE_PROCESSES)


def test_run_all_children_do_not_share_one_health_port(monkeypatch) -> None:
    monkeypatch.setenv("ACCESSA_HEALTH_PORT", "9500")  # one port would be every stage's
    monkeypatch.setenv("ACCESSA_HEALTH_BASE_PORT", "9300")
    env = child_env()
    for name in ("ACCESSA_HEALTH_PORT", "ACCESSA_HEALTH_BASE_PORT"):
        monkeypatch.delenv(name)  # the children see `env` only
    ports = _stack_ports(env)
    assert sorted(ports.values()) == [9301, 9302, 9303, 9304]


def test_a_single_process_keeps_its_explicit_health_port() -> None:
    assert (
        Settings(_env_file=None, health_port=9500, health_base_port=9300).port_for("parser") == 9500
    )
