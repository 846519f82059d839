"""The run directory's `junit.xml`: xunit2, one test case per test, written from reports.

The run directory always gets a JUnit file - whether or not `--junitxml` was given, and
in xunit2 whatever `junit_family` says - because certification bundles carry it and CI
systems read it. pytest's own writer is not public API (its class lives in
`_pytest.junitxml`), so this plugin writes the same document from the public
`pytest_runtest_logreport` reports: on the controller under xdist, where every report
arrives, so the file is complete with `-n`. It follows pytest's xunit2 output - test case
names and class names, failure, error and skip elements with pytest's messages, the
`junit_suite_name`, `junit_duration_report`, `junit_logging`, `junit_log_passing_tests`
and `--junitprefix` settings - with one difference: a test that fails and then errors in
teardown is one test case holding both, not two, so there is exactly one test case per
check and cluster. `winstor.reports.results.xunit2_problems` is the check of its shape.
"""

from __future__ import annotations

import os
import platform
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

__all__ = ["JunitWriter", "xml_text"]

# XML 1.0 characters (pytest leaves out DEL as well); the rest are shown as #xNN.
_ILLEGAL = re.compile("[^\u0009\u000a\u000d\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd"
                      "\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """`value` as text that XML can hold, characters it cannot shown as `#xNN`."""
    return _ILLEGAL.sub(lambda m: f"#x{ord(m.group()):02X}" if ord(m.group()) <= 0xFF
                        else f"#x{ord(m.group()):04X}", str(value))


@dataclass
class _Case:
    classname: str
    name: str
    duration: float = 0.0
    children: list[ET.Element] = field(default_factory=list)

    def add(self, tag: str, message: str, text: str | None = None, **attrs: str) -> None:
        el = ET.Element(tag, attrs, message=xml_text(message))
        if text is not None:
            el.text = xml_text(text)
        self.children.append(el)


class JunitWriter:
    """A pytest plugin object: collects reports, writes `path` at session end when
    `enabled()` says the run executed catalog checks."""

    def __init__(self, path: Path, config: pytest.Config, enabled: Any,
                 interrupted: Any = dict) -> None:
        def ini(name: str, default: Any) -> Any:
            try:  # pytest's junitxml plugin (which declares these) may be disabled
                return config.getini(name)
            except ValueError:
                return default
        self.path = path
        self.enabled = enabled
        # () -> {node id: why} of the tests a signal stopped before their verdict: pytest
        # reports nothing for them, and a report of the run must not leave them out
        self.interrupted = interrupted
        self.prefix: str | None = getattr(config.option, "junitprefix", None)
        self.suite_name = ini("junit_suite_name", "pytest")
        self.logging = ini("junit_logging", "no")
        self.duration_report = ini("junit_duration_report", "total")
        self.log_passing = ini("junit_log_passing_tests", True)
        self.cases: dict[str, _Case] = {}
        self.started = time.time()

    # -- hooks ----------------------------------------------------------------------------
    def pytest_sessionstart(self) -> None:
        self.started = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = None
        if report.passed:
            if report.when == "call":
                case = self._case(report)
        elif report.failed:
            case = self._case(report)
            if report.when == "call":
                if hasattr(report, "wasxfail"):
                    case.add("skipped", "xfail-marked test passes unexpectedly")
                else:
                    case.add("failure", _crash_message(report), str(report.longrepr))
                    if not self.log_passing:
                        self._captured(case, report)
            elif report.when in ("setup", "teardown"):
                case.add("error", f'failed on {report.when} with "{_crash_message(report)}"',
                         str(report.longrepr))
            else:
                # A lost check: xdist reports a crashed worker's test with when="???"
                # (winstor.plugin.hooks.pytest_handlecrashitem words it).
                case.add("error", _crash_message(report), str(report.longrepr))
        elif report.skipped:
            case = self._case(report)
            if hasattr(report, "wasxfail"):
                reason = str(report.wasxfail).removeprefix("reason: ")
                case.add("skipped", reason, type="pytest.xfail")
            else:
                path, line, reason = _skip_location(report)
                reason = reason.removeprefix("Skipped: ")
                case.add("skipped", reason, f"{path}:{line}: {reason}", type="pytest.skip")
                self._captured(case, report)
        if self.duration_report in ("total", report.when):
            self._case(report).duration += float(getattr(report, "duration", 0.0) or 0.0)
        if report.when == "teardown":
            self._captured(case or self._case(report), report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._case(report).add("error", "collection failure", str(report.longrepr))
        elif report.skipped:
            self._case(report).add("skipped", "collection skipped", str(report.longrepr))

    def pytest_internalerror(self, excrepr: Any) -> None:
        case = self.cases.setdefault("internal", _Case("pytest", "internal"))
        case.add("error", "internal error", str(excrepr))

    def pytest_sessionfinish(self) -> None:
        if not self.enabled():
            return
        for nodeid, why in self.interrupted().items():
            case = self._case(_Nodeid(nodeid))
            if not any(e.tag in ("failure", "error") for e in case.children):
                case.add("error", why, why)
        self.write()

    # -- the document ---------------------------------------------------------------------
    def document(self) -> str:
        cases = list(self.cases.values())
        suite = ET.Element("testsuite", {
            "name": self.suite_name,
            "errors": str(sum(1 for c in cases for e in c.children if e.tag == "error")),
            "failures": str(sum(1 for c in cases if any(e.tag == "failure"
                                                        for e in c.children))),
            "skipped": str(sum(1 for c in cases if any(e.tag == "skipped"
                                                       for e in c.children))),
            "tests": str(len(cases)),
            "time": f"{time.time() - self.started:.3f}",
            "timestamp": datetime.fromtimestamp(self.started).astimezone().isoformat(),
            "hostname": platform.node(),
        })
        for c in cases:
            el = ET.SubElement(suite, "testcase", classname=c.classname, name=c.name,
                               time=f"{c.duration:.3f}")
            el.extend(c.children)
        root = ET.Element("testsuites", name="pytest tests")
        root.append(suite)
        return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(self.document(), encoding="utf-8")
        tmp.replace(self.path)

    # -- inside ---------------------------------------------------------------------------
    def _case(self, report: Any) -> _Case:
        case = self.cases.get(report.nodeid)
        if case is None:
            names = _names(report.nodeid)
            classnames = ([self.prefix] if self.prefix else []) + names[:-1]
            case = self.cases[report.nodeid] = _Case(".".join(classnames), xml_text(names[-1]))
        return case

    def _captured(self, case: _Case, report: pytest.TestReport) -> None:
        """Captured output as pytest's `junit_logging` setting asks."""
        if self.logging == "no" or (report.passed and not self.log_passing):
            return

        def block(content: str, header: str) -> str:
            return "\n".join([header.center(80, "-"), content, ""])
        out = ""
        if self.logging in ("log", "all"):
            out = block(report.caplog, " Captured Log ")
        if self.logging in ("system-out", "out-err", "all"):
            out += block(report.capstdout, " Captured Out ")
            _text(case, "system-out", out)
            out = ""
        if self.logging in ("system-err", "out-err", "all"):
            _text(case, "system-err", block(report.capstderr, " Captured Err "))
        if out:
            _text(case, "system-out", out)


@dataclass
class _Nodeid:
    """What `_case` reads of a report, for a test that has none."""

    nodeid: str


def _text(case: _Case, tag: str, content: str) -> None:
    el = ET.Element(tag)
    el.text = xml_text(content)
    case.children.append(el)


def _names(nodeid: str) -> list[str]:
    """pytest's JUnit naming: `a/b/test_x.py::Class::test_y[p]` -> `a.b.test_x`, `Class`,
    `test_y[p]`."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return names


def _crash_message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash is not None else str(report.longrepr)


def _skip_location(report: pytest.TestReport) -> tuple[str, Any, str]:
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[0]), lr[1], str(lr[2])
    return report.location[0], report.location[1], str(lr or "")
