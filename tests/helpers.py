"""Self-test helpers: pytest runs of the suites, read back from their JUnit XML.

Self-tests drive the product the way users do - a `winstor sim up` process
and `pytest` runs in subprocesses - and then inspect the clusters and moto
with clients no check uses, so a defect in winstor's own client cannot hide
itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunResult:
    code: int
    output: str
    outcomes: dict[str, str] = field(default_factory=dict)  # "sim-1:CHECK" -> outcome
    messages: dict[str, str] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)

    def story(self, tail: int = 2500) -> str:
        """For an assertion's message: why the checks that did not pass did not (each
        different first line of their JUnit message once, with the checks it names - a
        whole cluster erroring says so in one line), then the run's output's tail."""
        why: dict[str, list[str]] = {}
        for key, outcome in sorted(self.outcomes.items()):
            if outcome in ("failed", "error"):
                msg = self.messages.get(key, "").strip()
                first = next((ln for ln in msg.splitlines() if ln.strip()), "(no message)")
                why.setdefault(f"{outcome}: {first[:400]}", []).append(key)
        lines = [f"{len(keys)} x {text}  [{', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}]"
                 for text, keys in why.items()]
        return "\n".join([*lines, "--- output (tail) ---", self.output[-tail:]])


def parse_junit(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    outcomes, messages, times = {}, {}, {}
    if not path.exists():
        return outcomes, messages, times
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if "[" not in name:
            continue
        # xdist's loadgroup may append "@<group>" after the parameter id (tests with
        # xdist_group marks under pytest 8; winstor itself no longer adds any).
        key = name[name.index("[") + 1:name.index("]")]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                # Kept apart: an error (a fixture or teardown failed) is not a check's
                # failed verdict, and a test expecting one must not accept the other.
                outcome = "failed" if child.tag == "failure" else "error"
                messages[key] = (child.get("message") or "") + "\n" + (child.text or "")
            elif child.tag == "skipped":
                outcome = "skipped"
                messages[key] = child.get("message") or ""
        outcomes[key] = outcome
        times[key] = float(case.get("time") or 0)
    return outcomes, messages, times


def run_suite(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
              timeout: float = 600) -> RunResult:
    junit = tmp_path / f"junit-{len(list(tmp_path.glob('junit-*')))}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--junitxml={junit}",
           "-o", "junit_family=xunit2", *args]
    full_env = {**os.environ, "WINSTOR_REPORT_DIR": str(tmp_path / "reports"), **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    outcomes, messages, times = parse_junit(junit)
    return RunResult(proc.returncode, proc.stdout + proc.stderr, outcomes, messages, times)


def eventually(fn: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll `fn` until it returns something true; for self-tests watching a cluster
    from outside (the product itself watches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout}s: {fn}")
