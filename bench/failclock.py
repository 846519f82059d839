"""pytest plugin for the benchmarks: when each check failed, to the microsecond.

`results.json` keeps one start/stop per check over all its phases, so a
check whose session fixtures tear down after it "stops" long after it failed.
The fault-detection benchmark needs the moment the deciding phase ended,
which pytest's own reports carry (`TestReport.stop`). Loaded with
`-p bench.failclock`; writes JSON lines to the file named by
`BENCH_FAILCLOCK`. Only the controller writes (xdist workers forward their
reports to it).
"""

from __future__ import annotations

import json
import os

import pytest

ENV = "BENCH_FAILCLOCK"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(ENV)
    if not path or not report.failed:
        return
    line = {"nodeid": report.nodeid, "when": report.when, "start": report.start,
            "stop": report.stop, "text": report.longreprtext[-4000:]}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        # Workers' reports reach the controller, which writes them once.
        os.environ.pop(ENV, None)
