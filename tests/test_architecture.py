"""The layout holds (#21): every import between packages is one that docs/design.md's map allows, no two modules
import each other in a circle anywhere in the repository, no file grows past 400 lines, and the trainer stays the
step order (under 350 lines). Imports are read from the source (ast), lazy ones inside functions included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED_FOLDERS = ("mer", "analysis", "sweeps", "hydra_plugins", "benchmarks")
# The commands users type: thin files on top of every package, allowed to import any of them.
COMMANDS = {"mer.run", "mer.export", "mer.downstream", "mer.start_over", "mer.data.prepare"}
MAX_LINES, MAX_TRAINER_LINES = 400, 350


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every module or `module.name` that `source` (the text of `module`) imports, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def repository_modules() -> dict[str, set[str]]:
    """module name -> what it imports, for every Python file of the checked folders."""
    paths = sorted(p for folder in CHECKED_FOLDERS for p in (REPO / folder).rglob("*.py"))
    return {module_name(p): imported_names(module_name(p), p.read_text(), p.name == "__init__.py") for p in paths}


def owner(module: str) -> str | None:
    """The map's row a module belongs to: `mer.<package>`, or a top-level folder (`analysis`, ...); None for the
    commands and `mer/__init__.py`."""
    parts = module.split(".")
    if module in COMMANDS or module == "mer":
        return None
    if parts[0] == "mer":
        return ".".join(parts[:2]) if len(parts) > 2 or (REPO / "mer" / parts[1]).is_dir() else None
    return parts[0]


def map_rules() -> dict[str, set[str]]:
    """docs/design.md's map: package -> the packages it may import."""
    text = (REPO / "docs" / "design.md").read_text()
    section = text.split("## Map of the packages", 1)[1].split("\n## ", 1)[0]
    rules: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rules[cells[0].strip("`")] = set(re.findall(r"`([a-z_.]+)`", cells[2]))
    return rules


def package_arrows(modules: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the modules that make that arrow."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for module, names in modules.items():
        source = owner(module)
        if source is None:
            continue
        for name in sorted(names):
            parts = name.split(".")
            if parts[0] != "mer" or len(parts) < 2 or not (REPO / "mer" / parts[1]).is_dir():
                continue
            target = f"mer.{parts[1]}"
            if target != source and module not in arrows.get((source, target), []):
                arrows.setdefault((source, target), []).append(module)
    return arrows


def unlisted_arrows(modules: dict[str, set[str]], rules: dict[str, set[str]]) -> list[str]:
    return [f"{source} -> {target} (in {', '.join(sorted(found_in))})"
            for (source, target), found_in in sorted(package_arrows(modules).items())
            if source in rules and target not in rules[source]]


def circles(modules: dict[str, set[str]]) -> list[list[str]]:
    """Groups of two or more modules that import each other in a circle (Tarjan's strongly connected
    components over the module graph)."""
    graph = {}
    for name, names in modules.items():
        targets = set()
        for imported in names:
            # `from a.b import c` names a.b.c: a module if there is one, else a name inside a.b.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_map_lists_every_package():
    rules = map_rules()
    packages = {f"mer.{p.name}" for p in (REPO / "mer").iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(rules), f"add {sorted(packages - set(rules))} to the map in docs/design.md"
    assert {"analysis", "sweeps", "hydra_plugins"} <= set(rules)


def test_every_import_between_packages_is_on_the_map():
    unlisted = unlisted_arrows(repository_modules(), map_rules())
    assert not unlisted, "imports the map in docs/design.md does not allow:\n" + "\n".join(unlisted)


def test_the_map_itself_has_no_circle():
    rules = map_rules()
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"the map has a circle: {' -> '.join(path + (package,))}"
        if package in done:
            return
        for target in rules.get(package, ()):
            visit(target, path + (package,))
        done.add(package)

    for package in rules:
        visit(package, ())


def test_no_module_imports_in_a_circle():
    found = circles(repository_modules())
    assert not found, f"modules that import each other in a circle: {found}"


@pytest.mark.parametrize("folder", CHECKED_FOLDERS)
def test_no_file_over_400_lines(folder):
    long = {str(p.relative_to(REPO)): n for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"


def test_trainer_is_the_step_order():
    lines = len((REPO / "mer" / "training" / "trainer.py").read_text().splitlines())
    assert lines < MAX_TRAINER_LINES, f"mer/training/trainer.py has {lines} lines; move what it delegates beside it"


def test_the_checks_can_fail():
    """A module of mer.files that imports the trainer is reported; so are two modules that import each other,
    also through `from package import module` and a lazy import inside a function."""
    probe = {"mer.files.probe": imported_names("mer.files.probe", "from mer.training.trainer import Trainer\n")}
    assert unlisted_arrows(probe, map_rules()) == ["mer.files -> mer.training (in mer.files.probe)"]
    pair = {"mer.a.x": imported_names("mer.a.x", "from mer.a import y\n"),
            "mer.a.y": imported_names("mer.a.y", "def later():\n    from .x import f\n")}
    assert circles(pair) == [["mer.a.x", "mer.a.y"]]
    assert circles({"mer.a.x": {"mer.a.y"}, "mer.a.y": set()}) == []
