"""The layers of `tools/prodval`: a module imports its own layer and the layers below it, never one above.

0. foundation (errors, secrets, console, commands, settings, jsexpr, runlock): running commands, logging,
   masking, settings, locks; nothing about Android, Maestro or a run.
1. tools (host, sdk, devices, maestro, apkfile, flows, flowlint, doctor, crashes): the machine, the external tools
   and the project's inputs: where they are, how to call them, what their answers mean. `doctor` checks
   them and changes nothing.
2. lifecycle (install, emulator, results, report, schedule, alerts and alerts.*): what a run sets up, owns
   and leaves behind: installed tools, emulators, the run record and the files derived from it, alerts.
3. stages (validate, apk, notify, merge, stage): one stage's work, from its start to its record.
4. entry (cli, boundary, chain): the invoke tasks, the one error boundary, the chain of tasks.

So `doctor` (tools) cannot import `emulator` (lifecycle): what the machine offers (KVM, Java, disk) is
`host`'s. The graph is read with `ast` from the sources, imports inside functions and under
`TYPE_CHECKING` included: a lazy import is still a dependency. `LAYERS` below is the table the tests use;
`prodval/__init__.py`'s docstring repeats it (a test keeps the two the same).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import prodval

# The repository: the folder above this file that holds tasks.py (wherever under tests/ this file lives).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "tasks.py").is_file() and (p / "tools").is_dir())
PACKAGE = ROOT / "tools" / "prodval"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("foundation", frozenset({"__init__", "errors", "secrets", "console", "commands", "settings", "jsexpr",
                              "runlock", "outcomes"})),
    ("tools", frozenset({"host", "sdk", "devices", "maestro", "apkfile", "flows", "flowlint", "doctor",
                         "crashes"})),
    ("lifecycle", frozenset({"install", "emulator", "results", "report", "schedule", "alerts", "apkcheck",
                             "history", "recording"})),
    ("stages", frozenset({"validate", "apk", "notify", "merge", "stage", "impact"})),
    ("entry", frozenset({"cli", "boundary", "chain", "flags"})),
)

# (importer, imported): why it is allowed for now. Each must still happen (a test says so), so the list
# only shrinks.
KNOWN_EXCEPTIONS: Mapping[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str  # module name inside the package: "doctor", "alerts.slack", "__init__" for the package itself
    imported: str
    line: int


def module_names(package: Path) -> dict[str, Path]:
    """Every module of `package` by its name inside it: "errors", "alerts" (alerts/__init__.py), "alerts.slack"."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _package_of(module: str, path: Path) -> list[str]:
    """The package a module's relative imports start from, as name parts ([] for the top package)."""
    parts = [] if module == "__init__" else module.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


def imports(package: Path) -> Iterator[Import]:
    """Every import of one of `package`'s modules by another, wherever in the file it is written."""
    top = package.name
    modules = module_names(package)

    def resolve(parts: list[str]) -> str:
        return ".".join(parts) if parts else "__init__"

    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    first, *rest = alias.name.split(".")
                    if first == top:
                        yield Import(module, resolve(rest), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package_of(module, path)
                    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                elif node.module and node.module.split(".")[0] == top:
                    base = []
                else:
                    continue  # the standard library or a third party
                named = node.module.split(".") if node.module else []
                target = base + (named[1:] if not node.level else named)
                for alias in node.names:
                    sub = resolve([*target, alias.name])
                    yield Import(module, sub if sub in modules else resolve(target), node.lineno)


def layer_of(module: str, layers: tuple[tuple[str, frozenset[str]], ...] = LAYERS) -> int | None:
    """The index of the layer that lists the module or, for one inside a subpackage, its top package."""
    for candidate in (module, module.partition(".")[0]):
        for index, (_, members) in enumerate(layers):
            if candidate in members:
                return index
    return None


def violations(package: Path, layers: tuple[tuple[str, frozenset[str]], ...] = LAYERS,
               known: Mapping[tuple[str, str], str] = KNOWN_EXCEPTIONS) -> list[str]:
    problems: list[tuple[Path, int, str]] = []
    for imp in set(imports(package)):  # `from .x import a, b` is one import of x
        own, other = layer_of(imp.importer, layers), layer_of(imp.imported, layers)
        if own is None or other is None or other <= own:
            continue
        if (imp.importer.split(".")[0], imp.imported.split(".")[0]) in known:
            continue
        path = module_names(package)[imp.importer].relative_to(package.parent)
        problems.append((path, imp.line, f"{path}:{imp.line}: {imp.importer} ({layers[own][0]}) imports "
                                         f"{imp.imported} ({layers[other][0]}), a layer above it"))
    return [text for _, _, text in sorted(problems)]


def test_layers_respected() -> None:
    problems = violations(PACKAGE)
    assert not problems, "imports that climb a layer (see LAYERS above):\n" + "\n".join(problems)


def find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def import_graph(package: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in module_names(package)}
    for imp in imports(package):
        if imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
    return graph


def test_no_import_cycle() -> None:
    """Every import counts, at module level or inside a function: a deferred import still ties the two
    modules together (`results` once imported `report` inside a function, and `report` imports `results`)."""
    cycle = find_cycle(import_graph(PACKAGE))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_a_cycle_through_a_deferred_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def thing():\n    from . import c\n")
    (package / "c.py").write_text("from .a import *\n")
    (package / "d.py").write_text("import os\nfrom .a import thing\n")
    assert import_graph(package)["d"] == {"a"}
    assert find_cycle(import_graph(package)) == ["a", "b", "c", "a"]


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in module_names(PACKAGE) if layer_of(m) is None)
    assert unplaced == [], f"add these modules to a layer in LAYERS (and to prodval/__init__.py): {unplaced}"


def test_known_exceptions_still_happen() -> None:
    seen = {(i.importer.split(".")[0], i.imported.split(".")[0]) for i in imports(PACKAGE)}
    gone = sorted(set(KNOWN_EXCEPTIONS) - seen)
    assert gone == [], f"these imports are gone: remove them from KNOWN_EXCEPTIONS: {gone}"


def test_the_package_docstring_names_every_layer() -> None:
    doc = prodval.__doc__ or ""
    for name, members in LAYERS:
        line = next((ln for ln in doc.splitlines() if ln.strip().lstrip("- ").startswith(f"{name}:")), "")
        assert line, f"prodval/__init__.py's docstring has no '{name}:' line"
        listed = {m for m in members if m != "__init__"}
        named = {w.strip() for w in line.split(":", 1)[1].split("(")[0].split(",")}
        assert named == listed, f"prodval/__init__.py's '{name}:' line lists {sorted(named)}, LAYERS {sorted(listed)}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Relative and absolute, `from . import x`, subpackages, and imports inside functions and under
    TYPE_CHECKING: each one that climbs a layer is reported with its file and line."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "low.py": ("from typing import TYPE_CHECKING\nimport os\n\nif TYPE_CHECKING:\n    from .high import H\n\n"
                   "def f():\n    from . import mid\n    return mid\n"),
        "mid.py": "from .low import f\nfrom pkg.sub.deep import D\n",
        "high.py": "import pkg.low\nfrom .sub import deep\n",
        "sub/__init__.py": "from . import deep\nfrom .. import high\n",
        "sub/deep.py": "from ..low import f\nD = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    layers = (("low", frozenset({"__init__", "low"})), ("mid", frozenset({"mid", "sub"})),
              ("high", frozenset({"high"})))
    found = {(i.importer, i.imported, i.line) for i in imports(pkg)}
    assert found == {("low", "high", 5), ("low", "mid", 8), ("mid", "low", 1), ("mid", "sub.deep", 2),
                     ("high", "low", 1), ("high", "sub.deep", 2), ("sub", "sub.deep", 1), ("sub", "high", 2),
                     ("sub.deep", "low", 1)}
    assert violations(pkg, layers, {}) == [
        "pkg/low.py:5: low (low) imports high (high), a layer above it",
        "pkg/low.py:8: low (low) imports mid (mid), a layer above it",
        "pkg/sub/__init__.py:2: sub (mid) imports high (high), a layer above it",
    ]
    assert violations(pkg, layers, {("low", "high"): "allowed", ("low", "mid"): "allowed", ("sub", "high"): ""}) == []


# A path outside the repository: the shared folders this project was written beside, or a machine's own.
OUTSIDE = re.compile(r"\bshared/(?:reference|seed|STYLE)\b|(?<![\w.])/work/")


def test_sources_cite_nothing_outside_the_repository() -> None:
    """Docstrings and comments cite files of the repository or upstream links: a reader of the
    repository cannot open a path on the machine it was written on."""
    root = ROOT
    files = [root / "tasks.py", root / "noxfile.py"] + [
        p for folder in (root / "tools", root / "tests") for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".egg-info"))
        and p.resolve() != Path(__file__).resolve()]
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary fixture
        found += [f"{path.relative_to(root)}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                  if OUTSIDE.search(line)]
    assert found == [], "cite a file of the repository or an upstream link instead:\n" + "\n".join(found)
