"""The layers of ``docs/architecture.md`` hold: every import inside ``marginflow`` (at module
level or inside a function) points down the stack, and nothing in the runtime imports the
simulation tooling in ``marginflow.sim``."""

from __future__ import annotations

import ast
from pathlib import Path

import marginflow

ROOT = Path(marginflow.__file__).parent
RANK = {
    "core": 0,
    "pricing": 1,
    "scenarios": 2,
    "margin": 3,
    "simm": 3,
    "engine": 4,
    "io": 4,
    "store": 5,
    "backtest": 5,  # margin over history against realised P&L: over engine, under app
    "stress": 5,  # stress sets: files through io's checks and reader, scenarios below; under app
    "stream": 6,
    "app": 7,
    "service": 8,
    "cli": 9,  # the shell over everything, the service too (serve, keys)
}
BESIDE = "sim"  # imports anything; imported only by the shells (cli) and tests
SHELLS = {"cli"}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "marginflow" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def violations() -> list[str]:
    found: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        here = _package(".".join(rel.with_suffix("").parts))
        if here is None or here == BESIDE or here not in RANK:
            continue
        for line, module in _imports(path):
            there = _package(module)
            if there is None or there == here:
                continue
            if there == BESIDE:
                if here not in SHELLS:
                    found.append(f"{rel}:{line}: the runtime imports {module} (simulation)")
                continue
            if there not in RANK or RANK[there] >= RANK[here]:
                found.append(f"{rel}:{line}: {here} imports {module} ({there}), not below it")
    return found


def test_imports_point_down_the_stack() -> None:
    assert violations() == []


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - set(RANK) - {BESIDE} == set()
