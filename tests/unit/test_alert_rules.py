"""The alert rules, evaluated: `promtool check rules` and `promtool test rules` on
infra/prometheus/tests/, one file per alert showing it firing and not firing on series named
as the code exports them (a renamed metric fails here and in test_observability)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_observability import exported_names

PROMETHEUS = Path(__file__).resolve().parents[2] / "infra/prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: `make system-packages` installs it (Debian package prometheus)",
)


def alert_names() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"]]


def rule_test_files() -> list[Path]:
    return sorted((PROMETHEUS / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS
    )


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@needs_promtool
def test_every_alert_unit_test_passes() -> None:
    files = [str(p.relative_to(PROMETHEUS)) for p in rule_test_files()]
    result = promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def test_every_alert_has_a_test_that_shows_it_firing_and_not_firing() -> None:
    cases: dict[str, list[list[object]]] = {}
    for path in rule_test_files():
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../alerts.yml"], path
        for test in spec["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case["exp_alerts"])
    for alert in alert_names():
        expectations = cases.get(alert, [])
        assert any(expectations), f"{alert}: no test shows it firing"
        assert any(not e for e in expectations), f"{alert}: no test shows it silent"
    assert set(cases) <= set(alert_names()), "a test names an alert alerts.yml does not have"


def test_the_series_of_the_tests_are_named_as_the_code_exports_them() -> None:
    names = exported_names()
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for series in test.get("input_series", []):
                name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", series["series"]).group()  # type: ignore[union-attr]
                assert name in names, f"{path.name}: {name} is not exported by the code"
