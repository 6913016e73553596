"""The project modules a set of entry modules can import, read from the source (imports inside functions too).

Static, so a lazy import in a function body counts as much as one at the top: what the layout and the
no-pickle tests assert holds for every code path, not only for what one test run happened to execute.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
PROJECT_PACKAGES = ("shared", "zadanie1", "zadanie2", "zadanie3", "zadanie4")
SERVICE_ENTRY_MODULES = ("zadanie4.app", "zadanie4.cli", "zadanie4.dependencies")
"""What ``recsys serve`` runs: the CLI command, the app factory and the real dependencies."""


def module_file(name: str) -> Path | None:
    """The source file of a project module (or package), None for anything outside the project."""
    parts = name.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(tree: ast.AST, module: str) -> set[str]:
    """Every module name an ``import`` or ``from ... import`` of the tree may refer to."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def reachable_modules(entry_modules: Iterable[str]) -> dict[str, Path]:
    """Project modules reachable from ``entry_modules`` (tests excluded), with their files."""
    seen: dict[str, Path] = {}
    todo = list(entry_modules)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        todo += [m for m in imported_names(ast.parse(path.read_text()), name) if ".tests" not in m]
    return seen


def service_modules() -> dict[str, Path]:
    """The modules the shipped service can import."""
    return reachable_modules(SERVICE_ENTRY_MODULES)
