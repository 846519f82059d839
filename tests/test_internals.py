"""The private pytest and pytest-xdist names winstor uses (winstor.plugin.internals) still
have the shape it uses - on the installed versions, in a real session and on real xdist
workers - and a change of shape is caught, named, and turns the failures-first ordering
off instead of breaking a run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import ROOT
from test_scenarios import ALL, EXPECTED
from winstor.plugin import internals

UPGRADE_HINT = ("a pytest or pytest-xdist upgrade changed a private name winstor uses; "
                "see winstor/plugin/internals.py for what each is for")


def test_the_installed_pytest_and_xdist_have_the_shapes_winstor_uses() -> None:
    problems = internals.problems()
    assert problems == [], f"{UPGRADE_HINT}:\n" + "\n".join(problems)


RECORD = '''
import json, os, pytest
from winstor.plugin import internals

@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    who = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    found = internals._worker_interactor(session.config)
    with open(os.path.join({out!r}, who + ".json"), "w") as f:
        json.dump({{"problems": internals.problems(session),
                    "interactor": type(found).__name__ if found else None}}, f)
'''


def test_a_session_and_its_xdist_workers_have_them_too(tmp_path: Path) -> None:
    """On a worker, xdist's WorkerInteractor is the class execnet built from the source
    it sent (not `xdist.remote`'s): it must be found, and checked, there."""
    import json

    (tmp_path / "record_internals.py").write_text(RECORD.format(out=str(tmp_path)))
    (tmp_path / "test_plain.py").write_text("def test_a():\n    pass\n\n"
                                            "def test_b():\n    pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "record_internals", "-n", "2",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path / "test_plain.py"),
         f"--report-dir={tmp_path / 'reports'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
             "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    seen = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(seen) == {"controller", "gw0", "gw1"}, seen
    for who, record in seen.items():
        assert record["problems"] == [], f"{who}: {UPGRADE_HINT}: {record['problems']}"
    assert seen["controller"]["interactor"] is None
    assert seen["gw0"]["interactor"] == seen["gw1"]["interactor"] == "WorkerInteractor"
    assert "reporting failures first is off" not in proc.stdout + proc.stderr


# -- a change of shape is named --------------------------------------------------------


class NoTeardownExact:
    def teardown(self) -> None: ...


class OtherSignature:
    def teardown_exact(self, item: Any, nextitem: Any) -> None: ...


class AsToday:
    def teardown_exact(self, nextitem: Any) -> None: ...


@pytest.mark.parametrize(("cls", "phrase"), [
    (NoTeardownExact, "SetupState has no teardown_exact"),
    (OtherSignature, "teardown_exact takes (self, item, nextitem), not (self, nextitem)"),
])
def test_a_changed_setupstate_is_named(cls: type, phrase: str) -> None:
    problems = internals.setupstate_problems(cls)
    assert len(problems) == 1 and phrase in problems[0], problems
    assert problems[0].startswith(f"pytest {pytest.__version__}:")
    assert internals.setupstate_problems(AsToday) == []


class WorkerWithoutIndex:
    def run_one_test(self) -> None:
        self.current = 0

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.sent = report


class WorkerAsToday:
    def run_one_test(self) -> None:
        self.item_index = 0

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.sent = (report, self.item_index)


def test_a_worker_that_no_longer_labels_reports_by_item_index_is_named() -> None:
    problems = internals.worker_problems(WorkerWithoutIndex)
    assert len(problems) == 2, problems
    assert "WorkerInteractor.run_one_test no longer uses self.item_index =" in problems[0]
    assert "pytest_runtest_logreport no longer uses self.item_index" in problems[1]
    gone = internals.worker_problems(object)
    assert len(gone) == 2 and all("WorkerInteractor has no" in p for p in gone), gone
    assert internals.worker_problems(WorkerAsToday) == []


def test_a_session_without_its_setup_state_is_named() -> None:
    config = SimpleNamespace()  # not a worker
    problems = internals.problems(SimpleNamespace(config=config))  # type: ignore[arg-type]
    assert any("the session has no _setupstate SetupState (found NoneType)" in p
               for p in problems), problems


BREAK = '''
from winstor.plugin import internals

internals.setupstate_problems = lambda cls: ["pytest 99: SetupState is gone"]
'''


def test_a_changed_internal_turns_the_ordering_off_and_the_run_still_judges(
        tmp_path: Path) -> None:
    """The run of tests/test_scenarios.py::test_failures_are_reported_when_the_cluster_
    shows_them, where the share checks report before EBS-BIND-01, with an internal
    changed: the ordering is off, a warning says why, the share checks report in catalog
    order - after EBS-BIND-01 - and every verdict is the same."""
    from winstor.targets.embedded import SimProcess

    (tmp_path / "break_internals.py").write_text(BREAK)
    sim = SimProcess(1, ["smb-mapping-missing"], time_scale=0.02)
    sim.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "break_internals", "-p", "no:randomly",
             f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--timeouts", "sim",
             f"--report-dir={tmp_path / 'reports'}", f"--junitxml={tmp_path / 'junit.xml'}"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, **sim.aws_env, "PYTHONPATH": str(tmp_path)})
    finally:
        sim.stop()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert ("winstor: reporting failures first is off, checks report in catalog order: "
            "pytest 99: SetupState is gone") in " ".join(out.split()), out[-3000:]
    failed = len(set(EXPECTED["smb-mapping-missing"]) | {"SMB-POD-01", "SMB-SHARED-01"})
    assert f"sim-1: {len(ALL) - failed} passed, {failed} failed, 0 errors, 0 skipped" in out, \
        out[-3000:]
    import xml.etree.ElementTree as ET
    order = [c.get("name", "").split(":", 1)[1].rstrip("]")
             for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")]
    assert order.index("EBS-BIND-01") < order.index("SMB-POD-01"), order


PRIVATE_ATTRIBUTES = {"_setupstate", "item_index", "_fixturemanager", "_fixtureinfo",
                      "_nodeid", "_request"}


def test_no_other_module_uses_a_private_name() -> None:
    """internals.py is where private names live: no other module of winstor, the fixtures
    or the suites imports `_pytest` or xdist's modules (its public face is its hooks),
    reads or writes pytest's or xdist's underscored attributes (by name or through
    getattr), or edits an item's fixture list."""
    import ast

    assert {p.name.split(":")[0] for p in internals.PRIVATE} == {"pytest", "pytest-xdist"}
    offenders = []
    for folder in ("winstor", "fixtures", "suites"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "winstor" / "plugin" / "internals.py":
                continue
            where = path.relative_to(ROOT)
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names
                             if a.name.split(".")[0] in ("_pytest", "xdist")]
                elif isinstance(node, ast.ImportFrom):
                    module = node.module or ""
                    names = [module] if module.split(".")[0] in ("_pytest", "xdist") else []
                elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
                    names = [node.attr]
                elif isinstance(node, ast.Constant) and node.value in PRIVATE_ATTRIBUTES:
                    names = [node.value]
                elif isinstance(node, ast.Attribute) and node.attr == "insert" and \
                        isinstance(node.value, ast.Attribute) and \
                        node.value.attr == "fixturenames":
                    names = ["fixturenames.insert"]
                offenders += [f"{where}:{node.lineno}: {n}" for n in names]  # type: ignore
    assert offenders == [], (
        "private pytest/xdist names outside winstor/plugin/internals.py (move them there, "
        "with why no public API does it): " + ", ".join(offenders))
