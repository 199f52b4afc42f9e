"""The package keeps the shape the style asks for: functions that fit on a screen, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "optiq_engine"
MAX_FUNCTION_LINES = 100  # decorators and docstring included
MAX_MODULE_LINES = 800


def _modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if "migrations" not in p.parts]


def test_no_function_is_longer_than_a_hundred_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = (node.end_lineno or node.lineno) - start + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these functions: " + ", ".join(long)


def test_no_module_is_longer_than_eight_hundred_lines() -> None:
    long = [
        f"{p.relative_to(SRC)} ({n})" for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these modules: " + ", ".join(long)
