"""The import graph of winstor, bench, fixtures and suites: one direction, no circles.

Why a test: a circle between modules works until someone imports them in another
order (or moves one import to module level) and gets a half-initialised module;
and the embedded cluster (`winstor.sim`) must stay a separate room that the
checks cannot reach into, or the catalog would pass against the sim for reasons
that do not hold on EKS. Both rules are easy to break by one innocent import, so
they are checked here on every run rather than found in review.

The graph is read from the source with `ast`, not by importing: every `import`
and `from ... import` counts wherever it stands - at module level, inside a
function, or under `if TYPE_CHECKING:` - because a function-level import is the
usual way to hide a circle rather than remove it, and a type-checking import is
still a dependency of the code that names the type.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREES = ("winstor", "bench", "fixtures", "suites")
# The distribution installs fixtures/ and suites/ as winstor.fixtures and
# winstor.suites (pyproject.toml's package-dir), and code may import them by either name.
ALIASES = {"winstor.fixtures": "fixtures", "winstor.suites": "suites"}
SIM = "winstor.sim"
# The only modules outside winstor/sim that may import it, and what each may import.
# Anything else that needs the emulated cluster starts it as a process
# (winstor.targets.embedded runs `python -m winstor sim up`) and talks to it over
# HTTPS like to any cluster, so the checks cannot lean on the emulator's insides.
SIM_IMPORTERS: dict[str, set[str]] = {
    # `winstor sim up` and `winstor sim scenarios`: the CLI is the sim's entry point.
    "winstor.cli.sim": {"winstor.sim.server", "winstor.sim.scenarios"},
    # The plugin validates --sim-scenario names before it launches the sim; it reads
    # the table of names only (scenarios.py imports nothing of the emulator).
    "winstor.plugin.hooks": {"winstor.sim.scenarios"},
    # The benchmark reports the modelled critical path against the sim's own
    # latency table (timing.py imports nothing of the emulator either).
    "bench.__main__": {"winstor.sim.timing"},
}

# What each part of the sim may import of the sim: the cluster (winstor.sim.cluster)
# assembles the parts from outside, so none of them imports it or anything above it.
SIM_PARTS: dict[str, set[str]] = {
    "winstor.sim.api": set(),
    # moto's server with winstor.sim.motofast's equivalents of its slow paths
    "winstor.sim.aws": {"winstor.sim.motofast"},
    "winstor.sim.motofast": set(),
    "winstor.sim.nodes": {"winstor.sim.api", "winstor.sim.topology"},
    "winstor.sim.controllers": {"winstor.sim.api", "winstor.sim.nodes", "winstor.sim.aws",
                                "winstor.sim.metrics", "winstor.sim.timing",
                                "winstor.sim.topology"},
    # The controlplane target's node agent: the sim's parts (kubelet, node models, moto,
    # the bootstrap's node objects) against a real API server. It is a second assembler
    # beside the cluster, never the embedded API server or the cluster itself.
    "winstor.sim.agent": {"winstor.sim.api", "winstor.sim.nodes", "winstor.sim.aws",
                          "winstor.sim.cloud", "winstor.sim.controllers",
                          "winstor.sim.metrics", "winstor.sim.timing", "winstor.sim.topology",
                          "winstor.sim.scenarios", "winstor.sim.bootstrap",
                          "winstor.sim.bootstrap_ebs"},
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module under TREES."""
    mods: dict[str, Path] = {}
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _canonical(name: str) -> str:
    for alias, real in ALIASES.items():
        if name == alias or name.startswith(alias + "."):
            return real + name[len(alias):]
    return name


def imported_modules(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules under TREES that `module` imports, relative imports resolved.

    `from pkg import name` imports the submodule `pkg.name` when there is one and
    otherwise a name defined in `pkg`, i.e. `pkg` itself; `import a.b.c` names the
    deepest module. Parent packages a dotted import runs on the way are not edges:
    they are not what the code asked for, and counting them would make every
    package that imports its own submodules a circle.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    wanted: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted += [_canonical(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            prefix = _canonical(prefix)
            for alias in node.names:
                sub = f"{prefix}.{alias.name}"
                wanted.append(sub if sub in mods else prefix)
    deps: set[str] = set()
    for name in wanted:
        while name and name not in mods:  # `import winstor.sim.x` of a name not in TREES
            name = name.rpartition(".")[0]
        if name and name != module:
            deps.add(name)
    return deps


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules under TREES it imports (itself left out)."""
    mods = module_files()
    return {module: imported_modules(module, path, mods) for module, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    return "\n".join(f"  {m} -> {', '.join(sorted(graph[m] & members))}" for m in component)


def within(module: str, scope: str) -> bool:
    return module == scope or module.startswith(scope + ".")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_cycles_finds_a_circle_and_nothing_else() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_the_known_edges(graph: dict[str, set[str]]) -> None:
    """The reader must resolve relative, package and function-level imports, or the
    rules below would pass on a graph with no edges."""
    assert "winstor.sim.cluster" in graph and "bench.__main__" in graph
    assert "winstor.sim.controllers" in graph["winstor.sim.cluster"]  # from .controllers import
    assert "winstor.sim.scenarios" in graph["winstor.cli.sim"]  # inside a function
    assert "winstor.sim.timing" in graph["bench.__main__"]
    assert any(d.startswith("winstor.sim.") for d in graph["winstor.sim.controllers.apps"])


@pytest.mark.parametrize("scope", ["winstor.sim", "bench", "winstor"])
def test_no_import_cycles(graph: dict[str, set[str]], scope: str) -> None:
    found = [c for c in cycles(graph) if any(within(m, scope) for m in c)]
    assert not found, f"import cycles touching {scope}:\n" + "\n\n".join(
        describe(c, graph) for c in found)


def test_bench_parts_do_not_import_the_driver(graph: dict[str, set[str]]) -> None:
    """`bench/__main__.py` drives the parts; a part that imported it back would tie
    every part to the whole benchmark (`python -m bench.catalog` has its own
    `__main__.py` for that reason)."""
    importers = {m for m, deps in graph.items() if "bench.__main__" in deps}
    assert all(m.endswith(".__main__") for m in importers), importers


@pytest.mark.parametrize("tree", ["suites", "fixtures"])
def test_checks_do_not_import_the_sim(graph: dict[str, set[str]], tree: str) -> None:
    """The checks and their fixtures see a cluster only through the API and AWS, the
    same way on the sim and on EKS."""
    bad = {m: sorted(d for d in deps if within(d, SIM))
           for m, deps in graph.items() if within(m, tree)}
    assert not {m: d for m, d in bad.items() if d}


@pytest.mark.parametrize("part", sorted(SIM_PARTS))
def test_sim_parts_stand_apart(graph: dict[str, set[str]], part: str) -> None:
    """The API server, the node models, the controllers and AWS each build only on
    what is below them, so each can be read (and tested) without the cluster."""
    allowed = SIM_PARTS[part] | {part}
    bad = {m: sorted(d for d in deps if within(d, SIM) and d != SIM
                     and not any(within(d, a) for a in allowed))
           for m, deps in graph.items() if within(m, part)}
    assert not {m: d for m, d in bad.items() if d}, f"{part} may import only {sorted(allowed)}"


def test_only_the_server_imports_the_cluster(graph: dict[str, set[str]]) -> None:
    """`winstor sim up` builds clusters; nothing the cluster is built from knows it."""
    importers = {m for m, deps in graph.items() if "winstor.sim.cluster" in deps}
    assert importers == {"winstor.sim.server"}


def test_only_the_listed_modules_import_the_sim(graph: dict[str, set[str]]) -> None:
    actual = {m: {d for d in deps if within(d, SIM)} for m, deps in graph.items()
              if not within(m, SIM)}
    actual = {m: d for m, d in actual.items() if d}
    assert actual == SIM_IMPORTERS, (
        "imports of winstor.sim from outside it changed; if the new one is meant, add it "
        "to SIM_IMPORTERS with the reason")
