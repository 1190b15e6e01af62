"""`ctx.commit()` begins its transaction by hand (one round trip with the dedup row), so a
`conn.transaction()` inside its block would fail with asyncpg's InterfaceError, which the
runtime takes for a lost connection and retries in place for ever: no stage may do that."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*(ROOT / "consumers").rglob("*.py"), *(ROOT / "bench").glob("bench_*.py")]


def _commit_blocks(tree: ast.AST) -> list[ast.AsyncWith]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.AsyncWith)
        and any(
            isinstance(item.context_expr, ast.Call)
            and isinstance(item.context_expr.func, ast.Attribute)
            and item.context_expr.func.attr == "commit"
            for item in node.items
        )
    ]


def test_the_stages_commit_through_ctx_commit() -> None:
    blocks = [b for p in SOURCES for b in _commit_blocks(ast.parse(p.read_text()))]
    assert len(blocks) >= 4  # the check below looks at something


def test_no_transaction_is_opened_inside_a_commit_block() -> None:
    offenders = []
    for path in SOURCES:
        for block in _commit_blocks(ast.parse(path.read_text())):
            for node in ast.walk(block):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "transaction"
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
