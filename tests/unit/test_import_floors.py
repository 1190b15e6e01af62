"""The floors of the code base, written down once: an import may only run down or sideways on
its own floor, never up; no stage imports a sibling stage, the API imports no stage, and
production code imports nothing from the development cluster (accessa.devstack).

A short AST test rather than import-linter: its layers cannot contain one another, so
"accessa except accessa.ops and accessa.cli" would mean listing every library module twice.
Every import counts, also those inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Package prefix -> floor; the longest prefix that matches a module decides.
FLOORS: dict[str, int] = {
    "schemas": 0,  # events, headers, topic names, the failure contract: imports nothing of ours
    "accessa": 1,  # the library: runtime, providers, pdf, devstack, config, db, kafka_clients...
    "consumers": 2,  # the stages
    "producer_api": 2,  # the upload API and the console
    "mocks": 2,  # the fake third-party servers
    "accessa.ops": 3,  # operator tools: reprocess (needs stage code), localrun, retention, ...
    "accessa.cli": 3,  # the composition root: runs the API, the stages, the mocks
    "bench": 4,
    "tests": 4,
}
STAGES = ("consumers.parser", "consumers.chunker", "consumers.embedder", "consumers.finalizer")
DEVSTACK = "accessa.devstack"
# Code that runs in a deployment: it must not need the embedded Kafka/Postgres cluster.
PRODUCTION = ("accessa", "consumers", "producer_api")
NOT_PRODUCTION = (DEVSTACK, "accessa.ops", "accessa.cli")


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def floor_of(module: str) -> int | None:
    """The floor of `module`, or None when it is not ours (stdlib, third party)."""
    matches = [p for p in FLOORS if _under(module, p)]
    return FLOORS[max(matches, key=len)] if matches else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every absolute and relative import in `path`; for `from a
    import b` both `a.b` and `a` are candidates, `a.b` is reported when it is a module of ours."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_ours(sub) else base))
    return found


@cache
def _is_ours(module: str) -> bool:
    rel = Path(*module.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _sources() -> list[Path]:
    roots = [p for p in FLOORS if "." not in p]
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py") if ".venv" not in p.parts)


def violations(paths: list[Path]) -> list[str]:
    """Every import in `paths` that breaks a rule, as `file:line: a -> b (why)`."""
    found = []
    for path in paths:
        source = _module_name(path)
        here = floor_of(source)
        for line, target in imports_of(path):
            there = floor_of(target)
            if here is None or there is None:
                continue
            where = f"{path.relative_to(ROOT)}:{line}: {source} -> {target}"
            if there > here:
                found.append(f"{where} (floor {here} imports floor {there})")
            own = next((s for s in STAGES if _under(source, s)), None)
            other = next((s for s in STAGES if _under(target, s)), None)
            if own and other and own != other:
                found.append(f"{where} (a stage imports a sibling stage)")
            if _under(source, "producer_api") and _under(target, "consumers"):
                found.append(f"{where} (the API imports a stage's internals)")
            in_production = any(_under(source, p) for p in PRODUCTION) and not any(
                _under(source, p) for p in NOT_PRODUCTION
            )
            if in_production and _under(target, DEVSTACK):
                found.append(f"{where} (production code imports the development cluster)")
    return found


def test_no_import_runs_up_a_floor_or_sideways_between_stages() -> None:
    sources = _sources()
    assert len(sources) > 100  # the walk found the code base, not an empty folder
    assert violations(sources) == []


@pytest.mark.parametrize(
    ("module", "line", "why"),
    [
        ("schemas/bad.py", "from accessa.errors import PermanentError", "floor 0 imports floor 1"),
        ("accessa/bad.py", "from consumers.chunker import chunking", "floor 1 imports floor 2"),
        ("accessa/bad.py", "import accessa.ops.reprocess", "floor 1 imports floor 3"),
        ("producer_api/bad.py", "from accessa.cli import main", "floor 2 imports floor 3"),
        ("consumers/chunker/bad.py", "from consumers.parser import ocr", "sibling stage"),
        ("producer_api/bad.py", "from consumers.embedder import models", "a stage's internals"),
        ("accessa/runtime/bad.py", "from accessa.devstack import kafka", "development cluster"),
        ("consumers/parser/bad.py", "from ..chunker import chunking", "sibling stage"),
    ],
)
def test_each_rule_catches_its_arrow(
    module: str, line: str, why: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same check on a planted file in a copy of the tree's shape fails with its reason."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    _is_ours.cache_clear()
    for pkg in (
        "schemas",
        "accessa/ops",
        "accessa/cli",
        "accessa/devstack",
        "accessa/runtime",
        "consumers/chunker",
        "consumers/parser",
        "consumers/embedder",
        "producer_api",
    ):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    for mod in (
        "accessa/errors.py",
        "accessa/ops/reprocess.py",
        "accessa/cli/main.py",
        "accessa/devstack/kafka.py",
        "consumers/chunker/chunking.py",
        "consumers/parser/ocr.py",
        "consumers/embedder/models.py",
    ):
        (tmp_path / mod).touch()
    bad = tmp_path / module
    bad.write_text(line + "\n")
    try:
        found = violations([bad])
    finally:
        _is_ours.cache_clear()
    assert len(found) == 1 and why in found[0], found


def test_allowed_arrows_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Down and sideways on one floor are fine: the CLI may run the API, ops may use a stage,
    devstack may use the library, the dev cluster is the CLI's to start."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    _is_ours.cache_clear()
    lines = {
        "accessa/cli/run.py": "import producer_api.main\nfrom accessa.devstack import kafka\n",
        "accessa/ops/reprocess.py": "from consumers.chunker.chunking import resolve_version\n",
        "accessa/devstack/kafka.py": "from accessa.health import broker_check\n",
        "consumers/chunker/app.py": "from accessa.text import sha256_text\nimport schemas\n",
    }
    for mod, text in lines.items():
        (tmp_path / mod).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / mod).write_text(text)
    try:
        assert violations([tmp_path / m for m in lines]) == []
    finally:
        _is_ours.cache_clear()
