"""The house: plumbing below, lessons above, the lock on its own, and no import loops.

Read from the code's own imports (with `ast`, every import, also those inside functions), so the
layout README describes stays true as lessons are added:

    labkit/      plumbing                      imports nothing of ours but labkit
    locks/       the lock and its steps        imports nothing of ours: copy it out whole
    tasklib/     what the tasks stand on       imports nothing of ours
    tasks.py     the app and every task        labkit, locks, tasklib
    commands/    the invoker's commands        commands, tasks, tasklib, labkit
    invoker.py   the producer                  commands, tasks, labkit
    scenes/      the lessons' demo runs        scenes, tasks, labkit, locks, tasklib
    scripts/, bench/, tests/                   anything (and nothing imports them)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("labkit", "locks", "tasklib", "tasks", "commands", "invoker", "scenes")
MAY_IMPORT = {
    "labkit": {"labkit"},
    "locks": {"locks"},
    "tasklib": {"tasklib"},
    "tasks": {"labkit", "locks", "tasklib"},
    "commands": {"commands", "tasks", "tasklib", "labkit"},
    "invoker": {"commands", "tasks", "labkit"},
    "scenes": {"scenes", "tasks", "labkit", "locks", "tasklib"},
}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 50
LONG_ON_PURPOSE = "# long on purpose:"   # a comment in the function (or file) says why not split
MAX_LONG_FILE_LINES = 1000               # even then: tasks.py holds every task, and stays readable


def source_files(*units: str) -> list[Path]:
    found = []
    for unit in units:
        folder = ROOT / unit
        found += sorted(folder.glob("*.py")) if folder.is_dir() else [ROOT / f"{unit}.py"]
    return found


def unit_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file, as dotted names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from scenes import lesson_02` imports the module scenes.lesson_02
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def ours(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in OURS else None


def test_each_floor_imports_only_what_is_below_it():
    wrong = []
    for path in source_files(*OURS):
        unit = unit_of(path)
        for name in sorted(imported_modules(path)):
            if ours(name) and ours(name) not in MAY_IMPORT[unit]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_scripts_bench_or_tests():
    wrong = [f"{path.relative_to(ROOT)} imports {name}"
             for path in source_files(*OURS, "scripts", "bench")
             for name in imported_modules(path)
             if name.split(".")[0] in ("scripts", "bench", "tests", "conftest")]
    assert not wrong, "\n".join(wrong)


def import_graph() -> dict[str, set[str]]:
    """Our modules, each with the modules of ours it imports (those that exist)."""
    modules = {module_of(path): path for path in source_files(*OURS)}
    return {module: {name for name in imported_modules(path) if name in modules and name != module}
            for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop, as [a, b, …, a], or None."""
    state: dict[str, str] = {}   # "open" while on the path, "done" after

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported, path + [imported])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_there_is_no_import_loop_between_our_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import loop: " + " → ".join(cycle)


def test_there_is_no_import_loop_between_our_top_level_packages_and_modules():
    graph: dict[str, set[str]] = {unit: set() for unit in OURS}
    for path in source_files(*OURS):
        graph[unit_of(path)].update(ours(name) for name in imported_modules(path) if ours(name))
    graph = {unit: imported - {unit} for unit, imported in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import loop: " + " → ".join(cycle)


def test_the_loop_finder_finds_a_loop():   # a test must be able to fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("path", source_files(*OURS, "scripts", "bench"),
                         ids=lambda path: str(path.relative_to(ROOT)))
def test_files_and_functions_stay_small_enough_to_read(path):
    text = path.read_text()
    says_why = any(line.startswith(LONG_ON_PURPOSE) for line in text.splitlines())
    ceiling = MAX_LONG_FILE_LINES if says_why else MAX_FILE_LINES
    assert len(text.splitlines()) <= ceiling, \
        f"{path.name}: split it, or say why not in a line starting {LONG_ON_PURPOSE!r} (README)"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = text.splitlines()[node.lineno - 1:node.end_lineno]
            if len(lines) > MAX_FUNCTION_LINES:
                assert any(LONG_ON_PURPOSE in line for line in lines), \
                    f"{path.name}: {node.name} has {len(lines)} lines; split it, or say why not " \
                    f"in a comment starting {LONG_ON_PURPOSE!r}"


def test_each_lesson_has_one_number_across_notebooks_scenes_and_tests():
    notebooks = {path.name[:2] for path in (ROOT / "notebooks").glob("[0-9][0-9]*.ipynb")}
    tests = {path.name[5:7] for path in (ROOT / "tests").glob("test_[0-9][0-9]_*.py")}
    scenes = {path.stem.split("_")[1] for path in (ROOT / "scenes").glob("lesson_*.py")}
    assert scenes <= notebooks and notebooks <= tests, (notebooks, scenes, tests)


SLIDE_TYPES = ("slide", "subslide", "fragment", "skip", "notes")


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda path: path.name)
def test_every_notebook_is_committed_clean_with_ids_slide_tags_and_the_set_up_line(path):
    """No outputs (a reader runs it; a diff shows only what changed), an id on every cell, a slide
    type on every cell (presented with RISE or as a deck), and the one set-up line first."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        assert cell.get("id"), cell.source[:60]
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
        assert cell.metadata["slideshow"]["slide_type"] in SLIDE_TYPES, cell.source[:60]
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert first_code.source.startswith(
        "from labkit import ensure_redis; redis_server = ensure_redis()")
