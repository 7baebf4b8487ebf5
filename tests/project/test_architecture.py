"""The package layout is the pipeline: stages import only earlier stages, and nothing imports in a circle.

Imports are read with `ast` from every module under src/envctl (module-level
and function-level alike: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "envctl"

# Rank of each stage: a module may import its own stage or a lower rank only.
# suite and everyday share a rank and may not import each other.
STAGES = {
    "core": 0, "matrix": 1, "rules": 2, "host": 3, "lock": 4, "create": 5, "certify": 6, "pipeline": 7,
    "suite": 8, "everyday": 8, "pack": 8, "cli": 9,
    "smoke": 0,  # stands apart: imports nothing of envctl (checked below); the host side reads RUNNER_PATH

}
TOP_LEVEL = {"__init__", "__main__"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """envctl modules `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "envctl")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "envctl":
                continue
            for alias in node.names:  # `from envctl.x import y` may name a submodule y
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _exists(candidate) else module)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py") if "smoke" not in p.relative_to(PACKAGE).parts}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] not in TOP_LEVEL else None


def test_every_module_lives_in_a_stage():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL)
    assert loose == [], f"modules outside a stage package: {loose}"
    unknown = sorted(d.name for d in PACKAGE.iterdir() if d.is_dir() and (d / "__init__.py").exists()
                     and d.name not in STAGES)
    assert unknown == [], f"packages with no rank in STAGES: {unknown}"


def test_no_stage_imports_a_later_stage():
    wrong = []
    for module, imported in _graph().items():
        here = _stage(module)
        for dep in imported:
            there = _stage(dep)
            if here is None or there is None or there == here:
                continue
            if STAGES[there] > STAGES[here] or (STAGES[there] == STAGES[here]):
                wrong.append(f"{module} -> {dep}")
    assert wrong == [], "imports against the pipeline order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_anywhere():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            dep = dep if dep in graph else next((m for m in graph if dep.startswith(m + ".")), dep)
            if dep not in graph or dep == node:
                continue
            if state.get(dep) == "open":
                cycles.append(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # Any cycle, inside a stage too (lock/ had lockfile <-> conda_lock_format, lockfile <-> lockcheck):
    # a lazy import that closes a circle is still a circle, only hidden until the call.
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_the_smoke_runner_imports_nothing_of_envctl():
    """It runs inside the target env with `python -I`, where envctl is not installed."""
    for path in (PACKAGE / "smoke").glob("*.py"):
        if path.name == "__init__.py":
            continue
        # Its siblings only: by bare name in the env, relatively when envctl imports envctl.smoke.* on the host.
        siblings = ("envctl_smoke", "envctl.smoke.envctl_smoke")
        assert not any(m.startswith("envctl") and not m.startswith(siblings) for m in _imports(path)), path


def test_no_private_name_is_imported_from_another_module():
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("envctl"):
                crossing += [f"{_module_name(path)}: {node.module}.{a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
    assert crossing == [], "private names imported across modules:\n" + "\n".join(crossing)


@pytest.mark.parametrize("limit", [450])
def test_no_module_grows_past_the_limit(limit):
    """~400 lines, with a little slack; the smoke runner's entry point is allowed its size (one self-contained file)."""
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > limit]
    assert long == [], "modules over the limit:\n" + "\n".join(long)


def test_the_docs_architecture_page_matches_the_tree():
    page = (PACKAGE.parent.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page.split("# Architecture", 1)[1]
    packages = {d.name for d in PACKAGE.iterdir() if d.is_dir() and (d / "__init__.py").exists()}
    tree = section.split("```", 2)[1]  # the tree block: "  name/   what it holds"
    listed = {m.group(1) for m in re.finditer(r"(?m)^  (\w+)/\s", tree)}
    assert packages <= listed, f"packages missing from docs/architecture.md: {sorted(packages - listed)}"
    assert listed <= packages, f"docs/architecture.md lists packages that do not exist: {sorted(listed - packages)}"


TESTS = Path(__file__).resolve().parents[1]
TEST_FOLDERS_BEYOND_STAGES = {"project", "support", "data"}  # the repository itself; helpers; fixture files


def test_tests_mirror_the_stages():
    """tests/<stage>/test_*.py: a stage's tests sit under its name, the repository's own checks
    under tests/project/, and no test file is left at the top."""
    loose = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert loose == [], f"test modules outside a stage folder: {loose}"
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    unknown = sorted(folders - set(STAGES) - TEST_FOLDERS_BEYOND_STAGES)
    assert unknown == [], f"test folders named after no stage: {unknown}"
    untested = sorted(stage for stage in STAGES if not list((TESTS / stage).glob("test_*.py")))
    assert untested == [], f"stages with no tests folder: {untested}"

