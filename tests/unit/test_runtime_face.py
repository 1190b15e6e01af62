"""Stage files import the runtime's public face (`accessa.runtime`), never its internals: the
loop, the commit and the failure routing can change without touching a stage."""

from __future__ import annotations

import ast
from pathlib import Path

import accessa.runtime

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_SUBMODULES = {"accessa.runtime.metrics"}  # the stages' own counters live there


def _runtime_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("accessa.runtime"):
            if node.module == "accessa.runtime":
                found += [f"accessa.runtime.{a.name}" for a in node.names]
            else:
                found.append(node.module or "")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("accessa.runtime")]
    return found


def test_stages_import_only_what_accessa_runtime_exports() -> None:
    public = {f"accessa.runtime.{name}" for name in accessa.runtime.__all__} | ALLOWED_SUBMODULES
    sources = sorted((ROOT / "consumers").rglob("*.py"))
    imported = {(p.relative_to(ROOT).as_posix(), m) for p in sources for m in _runtime_imports(p)}
    assert imported  # the stages do use the runtime: the check looks at something
    assert sorted((p, m) for p, m in imported if m not in public) == []


def test_the_public_face_has_the_unit_of_work_and_the_stage() -> None:
    assert {"StageApp", "StageContext", "Work", "Batched"} <= set(accessa.runtime.__all__)
