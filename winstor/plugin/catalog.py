"""The check catalog as `pytest --help` shows it: every check id with its title and
markers, and winstor's markers, after pytest's own help.

Read from the suites' source (`ast`), not by importing them: `--help` must work with
nothing installed beyond winstor and no cluster, and importing the suites would load the
fixtures and the Kubernetes client for a help text.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from winstor.plugin.checks import MARKERS, OPT_IN


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    markers: tuple[str, ...]
    order: int = 50


def _marks(node: ast.expr) -> list[str]:
    """`pytest.mark.x` (or a list of them) -> ["x"]."""
    items = node.elts if isinstance(node, (ast.List, ast.Tuple)) else [node]
    out = []
    for item in items:
        target = item.func if isinstance(item, ast.Call) else item
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) \
                and target.value.attr == "mark":
            out.append(target.attr)
    return out


def entries(suites: Path) -> list[Entry]:
    """The checks defined in `suites/test_*.py`, in catalog order."""
    found: list[Entry] = []
    for path in sorted(suites.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module_marks: list[str] = []
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
                module_marks += _marks(stmt.value)
        for stmt in tree.body:
            if not isinstance(stmt, ast.FunctionDef):
                continue
            check = next((d for d in stmt.decorator_list if isinstance(d, ast.Call)
                          and _marks(d) == ["winstor_check"]), None)
            if check is None or len(check.args) < 2:
                continue
            ident, title = (a.value if isinstance(a, ast.Constant) else "?"
                            for a in check.args[:2])
            order = next((k.value.value for k in check.keywords if k.arg == "order"
                          and isinstance(k.value, ast.Constant)), 50)
            marks = [m for d in stmt.decorator_list for m in _marks(d)
                     if m != "winstor_check"]
            found.append(Entry(str(ident), str(title),
                               tuple(dict.fromkeys([*module_marks, *marks])), int(order)))
    return sorted(found, key=lambda e: (e.order, e.id))


def help_text(suites: Path) -> str:
    lines = ["", "winstor checks (id, title, [markers]; `pytest -m MARKER` selects them):"]
    listed = entries(suites)
    width = max((len(e.id) for e in listed), default=10)
    for e in listed:
        marks = ", ".join(f"{m} (opt-in)" if m in OPT_IN else m for m in e.markers)
        lines.append(f"  {e.id:<{width}}  {e.title} [{marks}]")
    lines += ["", "winstor markers:"]
    lines += [f"  {name}: {text}" for name, text in MARKERS.items()]
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> object:
    """After pytest's own `--help`, the catalog."""
    result = yield
    if getattr(config.option, "help", False):
        from winstor.resources import data_dir
        try:
            print(help_text(data_dir("suites")))
        except (OSError, RuntimeError, SyntaxError) as err:  # help must never crash
            print(f"\nwinstor checks: cannot read the catalog ({err})")
    return result
