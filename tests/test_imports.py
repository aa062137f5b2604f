"""No import cycle between aaas_profile's modules, counting lazy imports inside functions.

A cycle hides a seam that is not one (say ``fit`` importing ``plots`` lazily while ``plots`` imports ``fit``).
The check reads every ``import`` / ``from … import`` statement of the package with ``ast``, wherever it sits
(module level, inside functions, under ``if``), resolves it to a module of the package, and looks for a cycle.
A sub-package's ``__init__`` importing its own submodules is allowed (that is how ``cli`` builds its app).
"""

from __future__ import annotations

import ast
from pathlib import Path

import aaas_profile

PACKAGE = Path(aaas_profile.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name → file, for every .py file under the package folder ``root`` (``__init__`` names the package)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports anywhere in its source."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from .. import y
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from pkg import sub" imports the submodule pkg.sub when there is one, else a name of pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # "import a.b.c" of a name inside a module
                    target = target.rpartition(".")[0]
                if not target or target == name:
                    continue
                if is_package and target.startswith(name + "."):  # a package's __init__ importing its submodules
                    continue
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert "aaas_profile.fit" in graph and "aaas_profile.cli.fit" in graph  # the walk found the package
    assert "aaas_profile.fit" in graph["aaas_profile.plots"]  # lazy and module-level imports are both seen
    assert "aaas_profile.plots" in graph["aaas_profile.fitrun"]  # an import inside a function counts
    assert cycles(graph) == []


def test_fit_imports_neither_its_io_nor_its_plots():
    # the maths does not know about files or figures: no module of the fit package imports them
    graph = import_graph(PACKAGE)
    fit_modules = [name for name in graph if name == "aaas_profile.fit" or name.startswith("aaas_profile.fit.")]
    assert len(fit_modules) > 5  # the package and its modules were found
    for name in fit_modules:
        assert not graph[name] & {"aaas_profile.plots", "aaas_profile.fitfile", "aaas_profile.fitrun",
                                  "aaas_profile.report", "aaas_profile.metrics"}, name
        # the fit is a stage: besides itself it uses only the core and the lower layers, never another stage
        assert graph[name] <= {*fit_modules, "aaas_profile.core.acceptance", "aaas_profile.core.curve_keys",
                               "aaas_profile.core.formulas", "aaas_profile.errors", "aaas_profile.runs"}, name
    # light: no torch (the checked reader, stored, imports nothing of the package but errors)
    assert graph["aaas_profile.fitfile"] <= {"aaas_profile.atomic", "aaas_profile.errors", "aaas_profile.stored"}
    assert graph["aaas_profile.stored"] <= {"aaas_profile.errors"}


def test_the_sweep_imports_no_other_stage():
    """The sweep package uses the core for what it shares with the fit (how many images the fit's test needs)
    and never imports the fit, the report, the simulator or train, at the top or inside a function."""
    graph = import_graph(PACKAGE)
    sweep_modules = [name for name in graph if name == "aaas_profile.sweep" or name.startswith("aaas_profile.sweep.")]
    assert len(sweep_modules) > 5
    stages = ("aaas_profile.fit", "aaas_profile.fitrun", "aaas_profile.report", "aaas_profile.analysis",
              "aaas_profile.sim", "aaas_profile.train", "aaas_profile.plots")
    for name in sweep_modules:
        sideways = {t for t in graph[name] if t.startswith(stages)}
        assert not sideways, f"{name} imports {sorted(sideways)}"


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_a_lazy_import_cycle_is_found(tmp_path):
    # the shape of the old fit ↔ plots circle: one side imports the other inside a function
    package = write_package(tmp_path / "pkg", {
        "__init__.py": "",
        "fit.py": "def run():\n    from pkg import plots\n    return plots\n",
        "plots.py": "from pkg.fit import run\n",
        "other.py": "import pkg.fit\n",
    })
    assert cycles(import_graph(package)) == [["pkg.fit", "pkg.plots"]]


def test_relative_and_three_module_cycles_are_found_and_init_importing_its_submodules_is_not_one(tmp_path):
    package = write_package(tmp_path / "pkg", {
        "__init__.py": "",
        "a.py": "from .sub import b\n",
        "sub/__init__.py": "from pkg.sub import b, c\n",
        "sub/b.py": "from . import c\n",
        "sub/c.py": "def f():\n    import pkg.a\n",
    })
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]  # pkg.sub (__init__) is in none


def test_the_tests_mirror_the_packages():
    """Each package of aaas_profile has its tests in a folder of the same name (tests/sweep/ for
    aaas_profile/sweep/); a module's tests stay at the top of tests/ (docs/testing.md)."""
    tests = Path(__file__).parent
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["cli", "core", "fit", "samplers", "sim", "sweep"], packages
    for name in packages:
        assert any((tests / name).glob("test_*.py")), f"tests/{name}/ holds no tests of aaas_profile/{name}/"
