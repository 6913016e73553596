"""The house of zadanie4: the shipped service never imports its measuring tools, and its rooms keep their arrows."""

from __future__ import annotations

import ast

from zadanie4.tests.import_graph import REPO, imported_names, reachable_modules, service_modules

MEASURING_TOOLS = "zadanie4.evaluation"
ROOMS = ("api", "pipeline", "rollout", "feedback", "observability")
MAY_NOT_IMPORT = {
    "observability": ("zadanie4.api", "zadanie4.service", "zadanie4.pipeline", "zadanie4.rollout", "zadanie4.feedback"),
    "feedback": ("zadanie4.api", "zadanie4.service", "zadanie4.pipeline", "zadanie4.rollout"),
    "rollout": ("zadanie4.api", "zadanie4.service", "zadanie4.pipeline"),
    "pipeline": ("zadanie4.api", "zadanie4.service"),
}


def _shipped_modules() -> list[str]:
    """Every module of zadanie4 outside its tests and its measuring tools."""
    names = []
    for path in sorted((REPO / "zadanie4").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "tests" in parts or parts[:2] == ("zadanie4", "evaluation"):
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_no_module_of_the_shipped_service_imports_a_measuring_tool():
    # given every module of zadanie4 except tests and zadanie4/evaluation
    shipped = _shipped_modules()
    assert "zadanie4.pipeline.recommendation_service" in shipped and "zadanie4.app" in shipped
    # when their imports are followed, also those inside functions
    reached = reachable_modules(shipped)
    # then nothing of zadanie4.evaluation is reached
    assert not [m for m in reached if _is_under(m, MEASURING_TOOLS)]


def test_the_import_check_sees_a_measuring_tool_when_one_is_imported():
    # given the measuring tools' own CLI (which imports the A/B simulator)
    reached = reachable_modules(["zadanie4.evaluation.cli"])
    # then the walk finds it: the check above can fail
    assert "zadanie4.evaluation.ab.cli" in reached


def test_what_recsys_serve_runs_reaches_every_room():
    # given the modules of `recsys serve` (CLI, app factory, real dependencies)
    reached = service_modules()
    # then each room is used, and the measuring tools are not
    for room in ROOMS:
        assert any(_is_under(m, f"zadanie4.{room}") for m in reached), room
    assert not any(_is_under(m, MEASURING_TOOLS) for m in reached)


def test_rooms_import_only_downwards():
    offences = []
    for name in _shipped_modules():
        parts = name.split(".")
        room = parts[1] if len(parts) > 1 else ""
        forbidden = MAY_NOT_IMPORT.get(room, ())
        path = REPO.joinpath(*parts)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for imported in imported_names(ast.parse(path.read_text()), name):
            if any(_is_under(imported, f) for f in forbidden):
                offences.append(f"{name} imports {imported}")
    assert not offences


def test_zadanie4_top_level_holds_only_the_composition():
    # the rooms hold the logic; the top level is the app factory, the instance, the contracts, settings, CLI
    top = sorted(p.stem for p in (REPO / "zadanie4").glob("*.py"))
    assert top == ["__init__", "app", "cli", "dependencies", "service", "settings"]
    for room in (*ROOMS, "evaluation"):
        init = REPO / "zadanie4" / room / "__init__.py"
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"zadanie4/{room}/__init__.py says what lives there"
