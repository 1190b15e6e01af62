"""The dashboard and the alert rules only use metrics the code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from accessa.runtime.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    import accessa.segments  # noqa: F401 - registers the compactor's metrics on REGISTRY
    import producer_api.metrics  # noqa: F401 - registers the API metrics on REGISTRY

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def referenced(expr: str) -> set[str]:
    return set(re.findall(r"\b(accessa_[a-z0-9_]+)", expr))


def dashboard_exprs() -> list[str]:
    dash = json.loads((ROOT / "infra/grafana/accessa-pipeline.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((ROOT / "infra/prometheus/alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_every_dashboard_query_references_an_exported_metric() -> None:
    names = exported_names()
    for expr in dashboard_exprs():
        assert referenced(expr), expr
        assert referenced(expr) <= names, f"{referenced(expr) - names} in {expr}"


def test_every_alert_references_an_exported_metric() -> None:
    names = exported_names()
    for expr in alert_exprs():
        assert referenced(expr) <= names, f"{referenced(expr) - names} in {expr}"


def test_the_dashboard_covers_every_stage_metric() -> None:
    used = set().union(*(referenced(e) for e in dashboard_exprs()))
    used = {re.sub(r"(_bucket|_count|_sum)$", "", n) for n in used}
    stage_metrics = {f.name for f in REGISTRY.collect() if f.name.startswith("accessa_")}
    missing = {m for m in stage_metrics if not any(u.startswith(m) for u in used)}
    assert missing == set()
