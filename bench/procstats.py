"""pytest plugin for the benchmarks: what each process of a run cost - CPU and peak memory.

Loaded with `-p bench.procstats`; every process of the run (the controller and each xdist
worker, or the only process) appends one JSON line to the file named by `BENCH_PROCSTATS`
as its session ends: its role, its xdist worker id, its peak resident set size
(`ru_maxrss`, the kernel's own high-water mark, so no sampling misses a peak) and its user
and system CPU seconds. Read back by `read()`. A process killed before its session ends
writes nothing; the catalog run's RUSAGE_CHILDREN figure still counts its CPU.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ENV = "BENCH_PROCSTATS"


_TIMES: dict[str, float] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _TIMES["sessionstart"] = time.monotonic()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _TIMES["last_report"] = time.monotonic()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _TIMES["sessionfinish"] = time.monotonic()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    now = time.monotonic()
    workerinput = getattr(config, "workerinput", None)
    line = {"role": "worker" if workerinput else "controller" if getattr(
                config.option, "numprocesses", None) else "serial",
            "worker": (workerinput or {}).get("workerid"), "pid": os.getpid(),
            # kilobytes on Linux, bytes on macOS
            "max_rss_mb": round(usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin"
                                                   else 1024), 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            # where the process's own time went: its session up to its last check report,
            # from then to the end of the session's last hooks (reports, teardown), the rest
            "seconds": {k: round(b - a, 3) for k, a, b in (
                ("session", _TIMES.get("sessionstart"), _TIMES.get("last_report")),
                ("after_last_report", _TIMES.get("last_report"), now),
                ("sessionfinish_to_end", _TIMES.get("sessionfinish"), now)) if a and b}}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def read(path: Path) -> list[dict[str, Any]]:
    """The lines the run's processes wrote (none when the file is missing)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sim_memory_mb(pid: int) -> float | None:
    """Peak resident set size of a running process (VmHWM, Linux /proc), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None
